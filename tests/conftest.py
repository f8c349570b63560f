"""Shared fixtures: personas, isolated storage, synchronous tasks, the sandbox over HTTP.

Markers `postgres` and `redis` skip a test with a reason when that service is not configured,
and fail it instead when CI=true, so CI can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

# Read by Django at run time (the browser tests use the ORM beside Playwright's event loop). The
# Hugging Face variables are set in fluxsite/settings.py: huggingface_hub is imported before this runs.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import pytest  # noqa: E402
from django.conf import settings as django_settings  # noqa: E402

# Imported here, before any test runs, so its count of requests in flight misses none.
from tests.helpers import sandbox_settle  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"


def _service_missing(marker: str) -> str | None:
    if (
        marker == "postgres"
        and django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"
    ):
        return "needs PostgreSQL: set DATABASE_URL (for example postgres://postgres@127.0.0.1:5432/test)"
    if marker == "redis":
        if not django_settings.REDIS_URL:
            return "needs Redis: set REDIS_URL (for example redis://127.0.0.1:6379/0)"
        try:
            import redis

            redis.Redis.from_url(django_settings.REDIS_URL, socket_connect_timeout=2).ping()
        except Exception as exc:
            return f"Redis at REDIS_URL does not answer: {exc}"
    return None


def pytest_runtest_setup(item) -> None:
    for marker in ("postgres", "redis"):
        if item.get_closest_marker(marker):
            reason = _service_missing(marker)
            if reason and IN_CI:
                pytest.fail(f"CI must not skip this test: {reason}", pytrace=False)
            elif reason:
                pytest.skip(reason)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Fast hashing, files under a temporary folder, and tasks run in-process."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STORAGES = {
        **django_settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": "/media/"},
        },
        "private": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "private"), "base_url": None},
        },
    }
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Rate limits count in a cache that outlives a test: off, except where a test is about them
    # (tests/fluxsite/test_rate_limits.py turns them on with fresh counters).
    settings.RATELIMIT_ENABLE = False
    settings.AXES_ENABLED = False
    # Each test starts with an empty cache: in pass 2 it is Redis, which outlives tests and runs.
    from django.core.cache import cache

    cache.clear()
    yield settings


@pytest.fixture(autouse=True)
def _sync_tasks(request, monkeypatch):
    """django-q2 tasks run synchronously unless the test drives the real worker (marker qcluster)."""
    if request.node.get_closest_marker("qcluster"):
        yield
        return
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    yield


# --- Personas -------------------------------------------------------------------------------------
PASSWORD = "correct-horse-battery-staple"


def _make_user(email: str, **extra):
    """A signed-up account whose address is verified, so it holds the welcome credits."""
    from fluxsite.accounts.services import user_email_confirm, user_sign_up

    signed_up = user_sign_up(email=email, password=PASSWORD)
    assert signed_up is not None
    confirmed = user_email_confirm(user=signed_up).user
    assert confirmed is not None
    user = confirmed
    for key, value in extra.items():
        setattr(user, key, value)
    if extra:
        user.save()
    return user


@pytest.fixture
def alice(db):
    """The owner in most tests."""
    return _make_user("alice@example.com")


@pytest.fixture
def bob(db):
    """Another user, who must never see alice's things."""
    return _make_user("bob@example.com")


@pytest.fixture
def staff(db):
    return _make_user("staff@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def anon_client(client):
    """An anonymous visitor."""
    return client


def _client_for(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def alice_client(alice):
    return _client_for(alice)


@pytest.fixture
def bob_client(bob):
    return _client_for(bob)


@pytest.fixture
def staff_client(staff):
    return _client_for(staff)


# --- The catalog ------------------------------------------------------------------------------------
SANDBOX_CATALOG = django_settings.BASE_DIR / "sandbox" / "stripe" / "catalog.json"


def catalog_load() -> None:
    """The sandbox's packs and plan, through the command `make run` uses: no migration inserts them,
    and a transaction=True test flushes whatever an earlier test loaded."""
    from django.core.management import call_command

    call_command("catalog_seed", SANDBOX_CATALOG, stdout=io.StringIO())


@pytest.fixture
def catalog(db):
    """Credit packs and a plan to buy, priced in the Stripe sandbox."""
    catalog_load()


# --- The sandbox over real HTTP --------------------------------------------------------------------
@pytest.fixture
def sandbox(live_server, settings, tmp_path):
    """Point every vendor client at the sandbox served by a real HTTP server thread.

    Tests that use it must be `django_db(transaction=True)` (live_server shares the database).
    Returns the live server's base URL.
    """
    from sandbox.faults import fault_clear

    base = live_server.url
    settings.SITE_URL = base
    settings.SANDBOX_MODE = True
    settings.REPLICATE_BASE_URL = f"{base}/sandbox/replicate"
    settings.HF_ENDPOINT = f"{base}/sandbox/hf"
    settings.STRIPE_API_BASE = f"{base}/sandbox/stripe"
    settings.SANDBOX_TRAINING_SECONDS = 3
    settings.SANDBOX_PREDICTION_SECONDS = 1
    settings.SANDBOX_HF_ROOT = tmp_path / "sandbox-hf"
    fault_clear()
    yield base
    # Nothing the test started may reach the next test through the same live server.
    if not sandbox_settle():
        warnings.warn("sandbox threads or live-server requests still running after 20 s", stacklevel=1)
    fault_clear()


@pytest.fixture
def qcluster_worker(sandbox, settings, tmp_path):
    """`manage.py qcluster` in its own process, sharing the live server's database and files (the
    test's storages are moved to a folder both processes see). Its output is in
    `tmp_path / "worker.log"`. Tests that use it are marked `qcluster`."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import worker_env

    media = tmp_path / "shared-media"
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media), "base_url": "/media/"},
        },
        "private": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media / "private"), "base_url": None},
        },
    }
    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
            env=worker_env(sandbox, media, settings.SANDBOX_HF_ROOT, tmp_path / "var"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield process
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


# --- A real browser ------------------------------------------------------------------------------
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def _chromium():
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("chromium is missing in CI (.ci/run installs Debian's chromium)")
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(_chromium):
    """A fresh browser page; console errors (CSP violations included) are collected in page.errors."""
    context = _chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.set_default_timeout(15000)
    yield page
    context.close()


def pytest_unconfigure(config) -> None:
    """Remove the SQLite test database's -wal and -shm files when the database itself is gone.

    Django deletes only the main file; SQLite deletes the other two when its last connection closes,
    and one can still be open at exit (seen after a browser test run in the middle of a random
    order), which left a pair per run in var/.
    """
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    name = database.get("TEST", {}).get("NAME") or ""
    if name and not os.path.exists(name):
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name + suffix)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_database_sessions(django_db_setup, django_db_blocker):
    """Live-server request threads and sandbox threads may outlive their test by a few seconds,
    each holding a database session; PostgreSQL refuses to drop the test database while one is open."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
