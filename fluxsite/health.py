"""What an operator and a load balancer ask: can this instance serve, and is the queue moving?

`/healthz` (fluxsite.views) only proves the process answers and reaches the database. The checks
here are `/healthz/ready`'s and `manage.py queue_status`'s: the database, the django-q2 broker (the
database or Redis), the private storage (a small write, read and delete), and each cluster's
heartbeat as django-q2 itself records it (its Stat, saved by every cluster's sentinel about every
second with a 3-second life, in Redis or, with the database broker, in the "queue_stats" cache).

A cluster that stopped reporting is an alert: `queue_status` exits non-zero and `/healthz/ready`
names it, but a web instance is not taken out of rotation for it (the web can serve while the
workers are being restarted; that is what the alert is for).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    milliseconds: int = 0


@dataclass(frozen=True)
class ClusterBeat:
    cluster_id: str
    host: str
    pid: int
    status: str
    workers: int
    seconds_since_beat: float
    stale: bool


@dataclass(frozen=True)
class QueueState:
    broker: str
    queued: int
    running: int
    failed: int
    failed_last_day: int
    oldest_queued_seconds: float | None
    clusters: list[ClusterBeat] = field(default_factory=list)

    @property
    def workers_ok(self) -> bool:
        return any(not c.stale for c in self.clusters)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["workers_ok"] = self.workers_ok
        return out


def _timed(name: str, probe: Callable[[], str]) -> Check:
    started = time.monotonic()
    try:
        detail = probe()
        ok = True
    except Exception as exc:  # a probe's failure is the answer, whatever it is
        # Only the error's type in the answer (/healthz/ready is public); the message, which may
        # name hosts and users, goes to the log, scrubbed.
        logger.warning("health check %s failed: %s", name, exc, exc_info=True)
        detail = type(exc).__name__
        ok = False
    return Check(name=name, ok=ok, detail=detail, milliseconds=round((time.monotonic() - started) * 1000))


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _broker() -> str:
    from django_q.brokers import get_broker

    broker = get_broker()
    broker.ping()  # Redis: PING; the database broker answers True without asking anything
    broker.queue_size()  # a real round trip on either broker
    return broker.info()


def _storage() -> str:
    from django.core.files.base import ContentFile

    from fluxsite.integrations.storage import PRIVATE, get_storage

    store = get_storage(PRIVATE)
    payload = uuid.uuid4().hex.encode()
    name = store.save(f"healthz/{payload.decode()}.txt", ContentFile(payload))
    try:
        with store.open(name, "rb") as handle:
            if handle.read() != payload:
                raise OSError("the file read back differs from the one written")
    finally:
        store.delete(name)
    return type(store).__name__


def readiness_checks() -> list[Check]:
    """The database, the broker and the private storage, each timed; none raises."""
    return [_timed("database", _database), _timed("broker", _broker), _timed("storage", _storage)]


def readiness_report() -> tuple[int, dict[str, Any]]:
    """/healthz/ready's status code and body: 503 naming the failing checks, else 200.

    The workers' heartbeat is reported beside the checks without failing the probe: a web
    instance that works is not taken out of rotation because the workers are down; a stale or
    missing cluster makes the status "degraded" (and queue_status exits 1).
    """
    checks = readiness_checks()
    failing = [c.name for c in checks if not c.ok]
    workers: dict[str, Any]
    try:
        beats = clusters_heartbeat()
        workers = {
            "ok": any(not b.stale for b in beats),
            "clusters": [asdict(b) for b in beats],
            "stale_after_seconds": settings.Q_HEARTBEAT_STALE_SECONDS,
        }
    except Exception as exc:  # the broker check names the cause
        workers = {"ok": False, "clusters": [], "detail": type(exc).__name__}
    body = {
        "status": "unavailable" if failing else ("ok" if workers["ok"] else "degraded"),
        "failing": failing,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": c.milliseconds} for c in checks},
        "workers": workers,
    }
    return (503 if failing else 200), body


def clusters_heartbeat(*, stale_seconds: int | None = None) -> list[ClusterBeat]:
    """Every django-q2 cluster that reported recently (django-q2's own Stat records)."""
    from django_q.brokers import get_broker
    from django_q.status import Stat

    limit = settings.Q_HEARTBEAT_STALE_SECONDS if stale_seconds is None else stale_seconds
    now = timezone.now()
    beats = []
    for stat in Stat.get_all(broker=get_broker()):
        age = (now - stat.timestamp).total_seconds()
        beats.append(
            ClusterBeat(
                cluster_id=str(stat.cluster_id),
                host=str(stat.host),
                pid=int(stat.pid or 0),
                status=str(stat.status),
                workers=len(stat.workers or []),
                seconds_since_beat=round(age, 1),
                stale=age > limit,
            )
        )
    return sorted(beats, key=lambda b: (b.host, b.cluster_id))


def _started(pack: Any) -> datetime | None:
    from django_q.signing import BadSignature, SignedPackage

    try:
        started = SignedPackage.loads(pack).get("started")
    except (BadSignature, AttributeError, TypeError, ValueError):
        return None
    return started if isinstance(started, datetime) else None


def _oldest_queued(broker: Any) -> datetime | None:
    """When the oldest task still waiting in the broker was enqueued."""
    from django_q.brokers.orm import ORM

    if isinstance(broker, ORM):
        oldest = broker.get_connection().filter(key=broker.list_key, lock__lte=timezone.now()).order_by("id")
        first = oldest.first()
        return _started(first.payload) if first is not None else None
    # Redis: tasks are RPUSHed and BLPOPped, so the head of the list is the oldest.
    head = broker.connection.lindex(broker.list_key, 0)
    return _started(head) if head is not None else None


# --- Tasks running on Redis ----------------------------------------------------------------------------
# The Redis broker pops a task when a cluster takes it and keeps no record of it, so each worker
# notes the task it runs in one hash beside the queue (pre_execute) and removes it when done
# (post_execute_in_worker). A worker killed mid-task leaves its note: notes older than the task
# timeout (when django-q2's guard would have killed the task anyway) are dropped when read.
_RUNNING_MARGIN_SECONDS = 60


def _running_key() -> str:
    from django_q.conf import Conf

    return f"django_q:{Conf.PREFIX}:fluxsite-running"


def _redis_broker() -> Any | None:
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis

    broker = get_broker()
    return broker if isinstance(broker, Redis) else None


def task_running_note(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """pre_execute: this task runs now (Redis only; the database broker's locked rows say it)."""
    if task.get("sync"):
        return
    try:
        broker = _redis_broker()
        if broker is not None:
            broker.connection.hset(_running_key(), str(task.get("id")), str(time.time()))
    except Exception:  # a bookkeeping note must never stop the task itself (the signal would raise)
        logger.warning("could not note task %s as running", task.get("id"), exc_info=True)


def task_running_forget(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """post_execute_in_worker: this task has ended."""
    if task.get("sync"):
        return
    try:
        broker = _redis_broker()
        if broker is not None:
            broker.connection.hdel(_running_key(), str(task.get("id")))
    except Exception:  # the note then expires after the task timeout
        logger.warning("could not forget running task %s", task.get("id"), exc_info=True)


def _redis_running(broker: Any) -> int:
    from django_q.conf import Conf

    oldest = time.time() - (Conf.TIMEOUT or 0) - _RUNNING_MARGIN_SECONDS
    notes = broker.connection.hgetall(_running_key())
    dead = [task_id for task_id, started in notes.items() if float(started) < oldest]
    if dead:
        broker.connection.hdel(_running_key(), *dead)
    return len(notes) - len(dead)


def queue_state(*, stale_seconds: int | None = None) -> QueueState:
    """Queued, running and failed tasks, the oldest queued one's age, and each cluster's heartbeat.

    Running: with the database broker, the tasks a cluster has taken and not yet acknowledged
    (locked rows); with Redis, the tasks the workers noted when they started them
    (task_running_note). Raises whatever the broker raises when it cannot be reached.
    """
    from datetime import timedelta

    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM
    from django_q.models import Failure

    broker = get_broker()
    now = timezone.now()
    oldest = _oldest_queued(broker)
    return QueueState(
        broker=broker.info(),
        queued=int(broker.queue_size()),
        running=int(broker.lock_size()) if isinstance(broker, ORM) else _redis_running(broker),
        failed=Failure.objects.count(),
        failed_last_day=Failure.objects.filter(stopped__gte=now - timedelta(days=1)).count(),
        oldest_queued_seconds=round((now - oldest).total_seconds(), 1) if oldest else None,
        clusters=clusters_heartbeat(stale_seconds=stale_seconds),
    )
