"""Fixtures of the fluxsite tests: cluster heartbeats, written where django-q2 itself keeps them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone


@pytest.fixture
def heartbeats(settings, tmp_path):
    """No cluster but the ones a test makes: the database broker's heartbeat cache moves to this
    test's folder (a `make run` worker beats into var/), and Redis forgets every earlier cluster."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    if "queue_stats" in settings.CACHES:
        settings.CACHES = {
            **settings.CACHES,
            "queue_stats": {**settings.CACHES["queue_stats"], "LOCATION": str(tmp_path / "queue-stats")},
        }
    broker = get_broker()
    on_redis = not Conf.ORM  # read now: a test may point Conf elsewhere meanwhile

    def forget_all() -> None:
        if on_redis:
            keys = broker.connection.keys(f"{Conf.Q_STAT}:*")
            if keys:
                broker.connection.delete(*keys)

    forget_all()
    yield beat
    forget_all()


def beat(*, cluster_id: str = "cluster-a", seconds_ago: float = 0, host: str = "worker-1") -> None:
    """A cluster's Stat as its sentinel saves it (django-q2's Status, signed, with a short life)."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage
    from django_q.status import Stat, Status

    status = Status(pid=4242, cluster_id=cluster_id)
    status.status = "Idle"
    status.host = host
    status.workers = [4243, 4244]
    status.timestamp = timezone.now() - timedelta(seconds=seconds_ago)
    get_broker().set_stat(Stat.get_key(cluster_id), SignedPackage.dumps(status, True), 60)
