"""manage.py queue_status: queued, running and failed tasks, the oldest's age, and each cluster's
heartbeat; exit 1 when no cluster reported in time. On the broker of this run (database or Redis)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from tests.helpers import wait_until

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("queue_status", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def queue(monkeypatch):
    """The real broker of this run, emptied, with tasks left queued (nothing runs them)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def test_with_no_cluster_it_alerts_and_exits_1(heartbeats, queue):
    code, out, err = run()
    assert code == 1
    assert "clusters: 0" in out
    assert "ALERT: no cluster has reported" in err


def test_it_counts_queued_tasks_and_the_oldest_one_s_age(heartbeats, queue):
    from django_q.tasks import async_task

    heartbeats(cluster_id="cluster-a")
    start = timezone.now()
    with time_machine.travel(start - timedelta(minutes=10), tick=False):
        async_task("math.floor", 1.5)
    async_task("math.floor", 2.5)
    async_task("math.floor", 3.5)

    code, out, _ = run("--json")
    state = json.loads(out)
    assert code == 0
    assert state["queued"] == 3
    assert 590 <= state["oldest_queued_seconds"] <= 700
    assert state["workers_ok"] is True


def test_it_counts_failed_tasks_in_all_and_in_the_last_day(heartbeats, queue):
    from django_q.models import Failure

    heartbeats()
    now = timezone.now()
    for i, when in enumerate([now - timedelta(hours=1), now - timedelta(days=3)]):
        Failure.objects.create(
            id=f"failed-{i}", name=f"failed-{i}", func="math.floor", started=when, stopped=when, success=False
        )
    state = json.loads(run("--json")[1])
    assert (state["failed"], state["failed_last_day"]) == (2, 1)


def test_a_cluster_silent_for_longer_than_the_threshold_is_stale_and_alerts(heartbeats, queue):
    heartbeats(cluster_id="cluster-old", seconds_ago=120, host="worker-2")
    code, out, err = run("--stale-seconds", "60")
    assert code == 1
    assert "STALE worker-2" in out
    assert "ALERT" in err
    # Another cluster still beating is enough: the queue is being worked.
    heartbeats(cluster_id="cluster-new", seconds_ago=1, host="worker-3")
    code, out, _ = run("--stale-seconds", "60")
    assert code == 0
    assert "ok worker-3" in out


def test_running_tasks_are_the_database_broker_s_locked_rows(heartbeats, queue):
    from django_q.brokers.orm import ORM
    from django_q.tasks import async_task

    if not isinstance(queue, ORM):
        pytest.skip("the database broker's rows; Redis has its own test below")
    heartbeats()
    async_task("math.floor", 1.5)
    async_task("math.floor", 2.5)
    queue.dequeue()  # a cluster takes one: the row is locked until acknowledged
    state = json.loads(run("--json")[1])
    assert (state["queued"], state["running"]) == (1, 1)


def test_on_redis_running_tasks_are_the_ones_workers_noted_and_a_killed_one_s_note_expires(
    heartbeats, queue, settings
):
    from django_q.brokers.orm import ORM
    from django_q.signals import post_execute_in_worker, pre_execute

    from fluxsite.health import _running_key

    if isinstance(queue, ORM):
        pytest.skip("Redis only: the database broker's locked rows say what runs")
    queue.connection.delete(_running_key())
    heartbeats()
    pre_execute.send(sender="django_q", func=None, task={"id": "task-1", "name": "one"})
    pre_execute.send(sender="django_q", func=None, task={"id": "task-2", "name": "two"})
    with time_machine.travel(timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"] + 120)):
        pre_execute.send(sender="django_q", func=None, task={"id": "task-killed", "name": "killed"})
    assert json.loads(run("--json")[1])["running"] == 2
    post_execute_in_worker.send(sender="django_q", func=None, task={"id": "task-1"})
    assert json.loads(run("--json")[1])["running"] == 1
    assert set(queue.connection.hkeys(_running_key())) == {b"task-2"}  # the killed one's note is gone
    queue.connection.delete(_running_key())


@pytest.mark.qcluster
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_is_seen_and_its_death_alerts(heartbeats, settings, tmp_path):
    """`manage.py qcluster` in its own process beats; killed with SIGKILL, it goes silent."""
    from tests.helpers import worker_env

    env = worker_env(settings.SITE_URL, tmp_path / "media", tmp_path / "hf", tmp_path / "var")
    if "queue_stats" in settings.CACHES:  # the worker's heartbeat cache is under its FLUXSITE_VAR_DIR
        settings.CACHES = {
            **settings.CACHES,
            "queue_stats": {
                **settings.CACHES["queue_stats"],
                "LOCATION": str(tmp_path / "var" / "queue-stats"),
            },
        }
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        start_new_session=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        code, out, _ = wait_until(lambda: run("--stale-seconds", "10"), lambda r: r[0] == 0, timeout=60)
        assert code == 0, out
        assert "clusters: 1" in out
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    code, out, err = wait_until(lambda: run("--stale-seconds", "10"), lambda r: r[0] == 1, timeout=30)
    assert code == 1, out
    assert "ALERT" in err
