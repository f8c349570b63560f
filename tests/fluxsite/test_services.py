"""The production parts: PostgreSQL, Redis as django-q2 broker and cache, and the run command."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.helpers import wait_for, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_database_is_postgresql_when_database_url_is_set():
    from django.db import connection

    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 130000


@pytest.mark.redis
def test_the_cache_is_redis_when_redis_url_is_set():
    from django.core.cache import cache

    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    cache.set("fluxsite-test-key", {"n": 1}, 30)
    assert cache.get("fluxsite-test-key") == {"n": 1}
    cache.delete("fluxsite-test-key")


@pytest.mark.redis
def test_django_q_uses_redis_as_its_broker_when_redis_url_is_set():
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis

    broker = get_broker("fluxsite-test-queue")
    assert isinstance(broker, Redis)
    broker.purge_queue()
    broker.enqueue("payload-1")
    assert broker.queue_size() == 1
    task = broker.dequeue()
    assert task[0][1] in (b"payload-1", "payload-1")
    broker.purge_queue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.once  # spawns the whole `make run` stack; the same on any database
def test_the_run_command_serves_the_login_page_and_stops_both_processes_on_ctrl_c(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update({"FLUXSITE_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=180
    )
    demo = subprocess.run(
        [*manage, "ensure_demo_account"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "demo@fluxsite.local" in demo.stdout
    port = _free_port()
    proc = subprocess.Popen(
        [*manage, "devserver", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # As from a terminal: a test run started in the background (nohup, `cmd &`) ignores SIGINT, and
        # the ignoring is inherited, so the Ctrl-C below would never arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def login_page() -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/account/login/", timeout=2)
        except httpx.TransportError:
            return None

    try:
        response = wait_until(login_page, lambda r: r is not None, timeout=60, interval=0.3)
        assert response is not None, "the web server did not start"
        assert response.status_code == 200
        assert "Log in" in response.text
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2  # runserver and qcluster
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

        def gone(pid: str) -> bool:
            try:
                return "zombie" in Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                return True

        assert wait_for(lambda: all(gone(pid) for pid in children), timeout=10), children
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
