"""docs/deploy.md stays true to the code: every variable of .env.example is listed, and the
Procfile's commands are the ones the guide (and the production-like run) use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "docs" / "deploy.md").read_text()


def test_every_variable_of_env_example_is_listed_in_the_deployment_guide():
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    listed = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", GUIDE, re.M))
    assert names and [n for n in names if n not in listed] == []


def test_the_guide_lists_no_variable_the_settings_do_not_read():
    settings = (ROOT / "fluxsite" / "settings.py").read_text()
    listed = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", GUIDE, re.M)
    assert [n for n in listed if f'"{n}"' not in settings] == []


def test_the_procfile_runs_gunicorn_and_qcluster_with_the_guides_settings():
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(procfile) == {"release", "web", "worker"}
    assert procfile["release"] == "python manage.py migrate --noinput"
    assert procfile["worker"] == "python manage.py qcluster"
    for flag in (
        "--worker-class gthread",
        "--threads 4",
        "--worker-connections 8",
        "--timeout 120",
        "--graceful-timeout 30",
    ):
        assert flag in procfile["web"] and flag in GUIDE
    assert "[docs/deploy.md](docs/deploy.md)" in (ROOT / "README.md").read_text()
