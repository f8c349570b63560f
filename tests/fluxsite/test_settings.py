"""Settings read only the environment; production values are checked by Django itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from fluxsite import env

ROOT = Path(__file__).resolve().parents[2]
PROD = {
    "DEBUG": "false",
    "SECRET_KEY": "x7Hq2-very-long-random-production-secret-key-for-the-deploy-check-0123456789",
    "ALLOWED_HOSTS": "fluxsite.example.com",
    "SITE_URL": "https://fluxsite.example.com",
    "REPLICATE_API_TOKEN": "r8_prod",
    "HF_TOKEN": "hf_prod",
    "STRIPE_SECRET_KEY": "sk_live_prod",
    "STRIPE_WEBHOOK_SECRET": "whsec_prod",
    "REPLICATE_WEBHOOK_SECRET": "whsec_cHJvZHVjdGlvbi1yZXBsaWNhdGUta2V5",
    "FIELD_ENCRYPTION_KEYS": "cHJvZHVjdGlvbi1maWVsZC1lbmNyeXB0aW9uLWtleTA=",
}


def run_manage(*args: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in PROD and not k.startswith(("DATABASE_URL", "REDIS"))
    }
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    clean.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for browser tests only; check --deploy refuses it
    clean.update({"FLUXSITE_VAR_DIR": str(ROOT / "var"), **extra_env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", extra_env=PROD)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_production_start_up_stops_with_a_clear_message_when_a_setting_is_missing(missing):
    values = {k: v for k, v in PROD.items() if k != missing}
    result = run_manage("check", extra_env=values)
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr


def test_sandbox_mode_is_refused_when_debug_is_off():
    # Refused while loading the settings (so gunicorn refuses too), before any system check runs.
    result = run_manage("check", extra_env={**PROD, "SANDBOX_MODE": "true"})
    assert result.returncode != 0
    assert "SANDBOX_MODE is on while DEBUG is off" in result.stderr


def test_env_bool_refuses_anything_but_true_or_false(monkeypatch):
    monkeypatch.setenv("FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be true or false"):
        env.env_bool("FLAG", False)
    monkeypatch.setenv("FLAG", "False")
    assert env.env_bool("FLAG", True) is False


def test_env_int_names_the_variable(monkeypatch):
    monkeypatch.setenv("COUNT", "ten")
    with pytest.raises(ImproperlyConfigured, match="COUNT must be a whole number"):
        env.env_int("COUNT", 1)


def test_env_secret_reads_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setenv("API_TOKEN_FILE", str(secret))
    assert env.env_secret("API_TOKEN") == "s3cret"


def test_database_url_becomes_a_postgres_entry():
    db = env.database_from_url("postgres://u:p%40ss@db.example.com:6543/fluxsite?sslmode=require")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "u",
        "p@ss",
        "db.example.com",
        "6543",
        "fluxsite",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}
    with pytest.raises(ImproperlyConfigured):
        env.database_from_url("mysql://u@h/db")


def test_the_embedded_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    """Checked in a fresh process on the default settings, whatever database this run uses."""
    script = (
        "from django.db import connection\n"
        "c = connection.cursor()\n"
        "print(c.execute('PRAGMA journal_mode').fetchone()[0], c.execute('PRAGMA busy_timeout').fetchone()[0])"
    )
    result = run_manage("shell", "-c", script, extra_env={"SQLITE_PATH": str(tmp_path / "db.sqlite3")})
    assert result.returncode == 0, result.stderr
    mode, timeout = result.stdout.strip().splitlines()[-1].split()
    assert mode == "wal" and int(timeout) >= 5000


def test_env_example_documents_every_variable_the_settings_read():
    import re

    settings_src = (ROOT / "fluxsite" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|list|secret|decimal_str)\("([A-Z0-9_]+)"', settings_src))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - documented == set()
