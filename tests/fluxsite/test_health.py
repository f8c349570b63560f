"""/healthz/ready: the database, the broker and the storage, each named; the workers' heartbeat."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_ready_answers_200_with_each_check_when_everything_works(anon_client, heartbeats):
    heartbeats(cluster_id="cluster-a")
    response = anon_client.get("/healthz/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "storage"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["workers"]["ok"] is True
    [cluster] = body["workers"]["clusters"]
    assert cluster["cluster_id"] == "cluster-a"
    assert cluster["stale"] is False
    assert response["Cache-Control"] == "no-store"


def test_ready_leaves_nothing_in_storage(anon_client, heartbeats, settings):
    from pathlib import Path

    anon_client.get("/healthz/ready")
    private = Path(settings.STORAGES["private"]["OPTIONS"]["location"])
    assert not [p for p in private.rglob("*") if p.is_file()]


def test_a_stopped_worker_is_reported_without_failing_the_probe(anon_client, heartbeats, settings):
    settings.Q_HEARTBEAT_STALE_SECONDS = 30
    heartbeats(cluster_id="cluster-old", seconds_ago=45)
    response = anon_client.get("/healthz/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["workers"]["ok"] is False
    assert body["workers"]["clusters"][0]["stale"] is True


def test_no_worker_at_all_is_reported_as_degraded(anon_client, heartbeats):
    body = anon_client.get("/healthz/ready").json()
    assert body["status"] == "degraded"
    assert body["workers"] == {**body["workers"], "ok": False, "clusters": []}


def test_a_broken_storage_answers_503_naming_it(anon_client, heartbeats, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the storage's folder should be")
    settings.STORAGES = {
        **settings.STORAGES,
        "private": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(blocker), "base_url": None},
        },
    }
    response = anon_client.get("/healthz/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["storage"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["storage"]["ok"] is False


def test_an_unreachable_broker_answers_503_naming_it(anon_client, heartbeats, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = anon_client.get("/healthz/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"]["detail"] == "ConnectionError"  # the type only: the page is public
    assert "127.0.0.1" not in response.content.decode()
    assert body["workers"]["ok"] is False


def test_ready_refuses_a_post(anon_client):
    assert anon_client.post("/healthz/ready").status_code == 405


def test_ready_is_exempt_from_the_https_redirect_as_healthz_is(client, settings, tmp_path):
    from tests.fluxsite.test_production_config import import_wsgi
    from tests.fluxsite.test_settings import PROD

    code = (
        "import fluxsite.wsgi\nfrom django.conf import settings\nimport re\n"
        "print(all(any(re.search(p, path) for p in settings.SECURE_REDIRECT_EXEMPT) "
        "for path in ('healthz', 'healthz/ready')), any(re.search(p, 'healthz/readyx') "
        "for p in settings.SECURE_REDIRECT_EXEMPT))"
    )
    result = import_wsgi(PROD, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True False"
