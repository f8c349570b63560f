"""Production configuration that cannot silently go wrong: checked by loading the settings for real,
in a fresh process, the way gunicorn does (`import fluxsite.wsgi`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from fluxsite import checks, env
from tests.fluxsite.test_settings import PROD, ROOT


def import_wsgi(
    extra_env: dict[str, str], tmp_path, code: str = "import fluxsite.wsgi"
) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PROD and not k.startswith(("DATABASE_URL", "REDIS", "SANDBOX", "FIELD_ENCRYPTION"))
    }
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "fluxsite.settings",
            "FLUXSITE_VAR_DIR": str(tmp_path / "var"),
            **extra_env,
        }
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_gunicorn_refuses_to_start_the_sandbox_with_debug_off(tmp_path):
    result = import_wsgi({**PROD, "SANDBOX_MODE": "true"}, tmp_path)
    assert result.returncode != 0
    assert "SANDBOX_MODE is on while DEBUG is off" in result.stderr


def test_the_production_application_loads_without_the_sandbox(tmp_path):
    code = (
        "import fluxsite.wsgi\nfrom django.conf import settings\n"
        "print(settings.DEBUG, settings.SANDBOX_MODE, settings.SECURE_REDIRECT_EXEMPT)"
    )
    result = import_wsgi(PROD, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False ['^healthz$', '^healthz/ready$']"


def test_production_requires_a_field_encryption_key(tmp_path):
    values = {k: v for k, v in PROD.items() if k != "FIELD_ENCRYPTION_KEYS"}
    result = import_wsgi(values, tmp_path)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must be set" in result.stderr


def test_a_malformed_field_encryption_key_is_refused_by_position(tmp_path):
    result = import_wsgi(
        {**PROD, "FIELD_ENCRYPTION_KEYS": f"{PROD['FIELD_ENCRYPTION_KEYS']},not-a-key"}, tmp_path
    )
    assert result.returncode != 0
    assert "key 2 is not a Fernet key" in result.stderr
    assert "not-a-key" not in result.stderr  # the message names the position, never the value


def test_the_health_check_is_exempt_from_the_https_redirect(client, settings, db):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^healthz/ready$"]
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz/ready").status_code == 200
    assert client.get("/account/login/").status_code == 301  # everything else still goes to https


def test_the_deploy_check_fails_without_a_webhook_signing_secret(settings):
    settings.DEBUG = False
    settings.REPLICATE_WEBHOOK_SECRET = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    errors = checks.webhook_secrets_set(None)
    assert [e.id for e in errors] == ["fluxsite.E002"]
    assert "REPLICATE_WEBHOOK_SECRET and STRIPE_WEBHOOK_SECRET are not set" in errors[0].msg
    settings.REPLICATE_WEBHOOK_SECRET = "whsec_c2VjcmV0"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_secret"
    assert checks.webhook_secrets_set(None) == []


def test_manage_check_deploy_reports_a_missing_webhook_secret(tmp_path):
    values = {k: v for k, v in PROD.items() if k != "REPLICATE_WEBHOOK_SECRET"}
    result = import_wsgi(
        values,
        tmp_path,
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'check', '--deploy'])",
    )
    assert result.returncode != 0
    assert "fluxsite.E002" in result.stderr and "REPLICATE_WEBHOOK_SECRET is not set" in result.stderr


@pytest.mark.django_db
def test_a_webhook_without_its_secret_answers_503_and_logs_an_error(client, settings, caplog):
    settings.REPLICATE_WEBHOOK_SECRET = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    with caplog.at_level(logging.ERROR):
        for url in ("/trainings/webhooks/replicate/", "/models/webhooks/replicate/"):
            response = client.post(
                url,
                b"{}",
                content_type="application/json",
                headers={k.title(): v for k, v in headers.items()},
            )
            assert response.status_code == 503, url
        response = client.post(
            "/billing/webhooks/stripe/",
            b"{}",
            content_type="application/json",
            headers={"Stripe-Signature": "t=1,v1=x"},
        )
        assert response.status_code == 503
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name != "django.request"]
    assert len(errors) == 3
    assert (
        "REPLICATE_WEBHOOK_SECRET" in errors[0].getMessage()
        and "STRIPE_WEBHOOK_SECRET" in errors[2].getMessage()
    )


# --- An empty variable means "unset" ------------------------------------------------------------
@pytest.mark.parametrize(
    ("helper", "default"),
    [
        (env.env_str, "fallback"),
        (env.env_bool, True),
        (env.env_int, 7),
        (env.env_list, ["a"]),
        (env.env_secret, "fallback"),
        (env.env_decimal_str, "1.5"),
    ],
)
def test_every_env_helper_treats_an_empty_variable_as_unset(monkeypatch, helper, default):
    monkeypatch.setenv("FLUXSITE_SOME_VAR", "")
    monkeypatch.setenv("FLUXSITE_SOME_VAR_FILE", "")
    assert helper("FLUXSITE_SOME_VAR", default) == default


def test_an_empty_var_dir_does_not_make_media_the_working_folder(tmp_path):
    code = "from django.conf import settings\nimport django\ndjango.setup()\nprint(settings.VAR_DIR, settings.MEDIA_ROOT)"
    result = import_wsgi({"FLUXSITE_VAR_DIR": "", "MEDIA_ROOT": ""}, tmp_path, code)
    assert result.returncode == 0, result.stderr
    var_dir, media_root = result.stdout.strip().splitlines()[-1].split()
    assert var_dir == str(ROOT / "var") and media_root == str(ROOT / "var" / "media")


def test_a_malformed_value_is_still_refused(monkeypatch):
    monkeypatch.setenv("FLUXSITE_SOME_VAR", "seven")
    with pytest.raises(ImproperlyConfigured, match="FLUXSITE_SOME_VAR must be a whole number"):
        env.env_int("FLUXSITE_SOME_VAR", 7)
