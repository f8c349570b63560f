"""A request id on every log line, carried into django-q2 tasks; JSON lines when LOG_FORMAT=json."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import multiprocessing
import queue
import re

import pytest
from django.conf import settings as django_settings
from django.http import HttpResponse
from django.urls import path

from fluxsite.logs import REQUEST_ID, JsonFormatter, RequestIdFilter
from fluxsite.reporting import SecretsFormatter

pytestmark = pytest.mark.django_db

log = logging.getLogger("tests.fluxsite.logs")
SEEN_IN_TASKS: list[str] = []


def task_that_logs(label: str) -> None:
    """The task: it logs, and notes the request id it ran under."""
    SEEN_IN_TASKS.append(REQUEST_ID.get())
    log.info("task %s ran", label)


def _view_that_logs_and_enqueues(request):
    from django_q.tasks import async_task

    log.info("in the view")
    async_task("tests.fluxsite.test_logs.task_that_logs", "from the view")
    return HttpResponse("ok")


def _view_that_fails(request):
    return HttpResponse("down", status=503)


urlpatterns = [path("logs/", _view_that_logs_and_enqueues), path("fails/", _view_that_fails)]


@pytest.fixture
def lines():
    """Every log line, formatted with the project's plain format and request id filter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    logging_config: dict = django_settings.LOGGING
    handler.setFormatter(SecretsFormatter(logging_config["formatters"]["plain"]["format"]))
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    SEEN_IN_TASKS.clear()
    yield lambda name="tests.fluxsite.logs": [
        line for line in out.getvalue().splitlines() if f" {name} " in line
    ]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_every_answer_carries_a_new_request_id(anon_client):
    first = anon_client.get("/healthz")["X-Request-ID"]
    second = anon_client.get("/healthz")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_a_sane_client_request_id_is_kept_and_answered(anon_client):
    response = anon_client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c21.eu-1"})
    assert response["X-Request-ID"] == "lb-7f3a9c21.eu-1"


@pytest.mark.parametrize(
    "given",
    ["short", "has space in it", "a" * 129, "line\nbreak-injection", '"quoted-value"', "-leading-dash-x"],
)
def test_an_unsafe_client_request_id_is_replaced_by_our_own(anon_client, given):
    response = anon_client.get("/healthz", headers={"X-Request-ID": given})
    assert response["X-Request-ID"] != given
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_a_redirect_carries_the_request_id_too(anon_client):
    response = anon_client.get("/trainings/")
    assert response.status_code == 302
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_the_view_and_the_task_it_enqueues_log_with_the_request_id(client, settings, lines):
    settings.ROOT_URLCONF = __name__
    response = client.get("/logs/", headers={"X-Request-ID": "req-0123456789"})
    assert response.status_code == 200
    got = lines()
    assert len(got) == 2, got
    assert all("[req-0123456789]" in line for line in got)
    assert SEEN_IN_TASKS == ["req-0123456789"]
    # Outside the request the id is gone again (the task restored what was there before it).
    log.info("after the request")
    assert "[-]" in lines()[-1]


def test_django_s_own_line_about_a_failed_answer_carries_the_request_id(client, settings, lines):
    """Django logs a 5xx after the middleware chain returned: the id must still be set then."""
    settings.ROOT_URLCONF = __name__
    client.get("/fails/", headers={"X-Request-ID": "req-failing-0001"})
    [line] = lines("django.request")
    assert "[req-failing-0001]" in line
    assert "Service Unavailable" in line


def test_a_task_run_by_the_worker_elsewhere_logs_with_the_id_of_the_request_that_enqueued_it(
    lines, monkeypatch
):
    """Through the broker and django-q2's own worker loop, in a fresh context that never saw the
    request: only the task package can bring the id there."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.signing import SignedPackage
    from django_q.tasks import async_task
    from django_q.worker import worker

    monkeypatch.setattr(Conf, "SYNC", False)
    broker = get_broker("fluxsite-test-logs")
    broker.purge_queue()  # Redis outlives a test: nothing of an earlier run may be dequeued here
    token = REQUEST_ID.set("enqueuing-request-42")
    try:
        async_task("tests.fluxsite.test_logs.task_that_logs", "from the broker", broker=broker)
    finally:
        REQUEST_ID.reset(token)

    [(_, pack)] = broker.dequeue()
    task = SignedPackage.loads(pack)
    task["sync"] = True  # run in this process without closing the test's database connection
    tasks: queue.Queue = queue.Queue()
    tasks.put(task)
    tasks.put("STOP")
    results: queue.Queue = queue.Queue()
    contextvars.Context().run(worker, tasks, results, multiprocessing.Value("f", -1))

    assert results.get_nowait()["success"] is True
    assert SEEN_IN_TASKS == ["enqueuing-request-42"]
    assert [line for line in lines() if "from the broker" in line][0].count("[enqueuing-request-42]") == 1


def test_a_task_enqueued_outside_any_request_gets_an_id_of_its_own(lines):
    from django_q.tasks import async_task

    async_task("tests.fluxsite.test_logs.task_that_logs", "from a schedule")
    assert len(SEEN_IN_TASKS) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", SEEN_IN_TASKS[0])
    assert f"[{SEEN_IN_TASKS[0]}]" in lines()[-1]
    assert REQUEST_ID.get() == ""


def _json_line(record_message: str, *args, exc: BaseException | None = None) -> dict:
    record = logging.LogRecord(
        "billing.services",
        logging.WARNING,
        __file__,
        1,
        record_message,
        args,
        (type(exc), exc, exc.__traceback__) if exc else None,
    )
    RequestIdFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_a_json_log_line_is_one_object_with_the_request_id_level_logger_and_message():
    token = REQUEST_ID.set("json-request-0001")
    try:
        line = _json_line("spent %s credits", 40)
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "json-request-0001"
    assert line["level"] == "WARNING"
    assert line["logger"] == "billing.services"
    assert line["message"] == "spent 40 credits"
    assert line["time"].endswith("+00:00")


def test_a_json_log_line_keeps_a_multiline_traceback_inside_one_line_and_scrubs_secrets(settings):
    settings.STRIPE_SECRET_KEY = "sk_live_abcdefghijklmnop"
    try:
        raise ValueError('Stripe said "no" to sk_live_abcdefghijklmnop at postgres://u:pw-hunter2@db/x')
    except ValueError as exc:
        line = _json_line("the call failed: %s", exc, exc=exc)
    text = json.dumps(line)
    assert "sk_live_abcdefghijklmnop" not in text
    assert "pw-hunter2" not in text
    assert "Traceback" in line["exception"]
    assert line["request_id"] is None


def test_log_format_json_is_what_the_settings_configure(tmp_path):
    from tests.fluxsite.test_production_config import import_wsgi

    code = "import fluxsite.wsgi, logging\nlogging.getLogger('fluxsite.check').warning('hello %s', 'json')\n"
    result = import_wsgi({"LOG_FORMAT": "json"}, tmp_path, code)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line == {**line, "level": "WARNING", "logger": "fluxsite.check", "message": "hello json"}
    assert "request_id" in line


def test_an_unknown_log_format_stops_start_up(tmp_path):
    from tests.fluxsite.test_production_config import import_wsgi

    result = import_wsgi({"LOG_FORMAT": "xml"}, tmp_path)
    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json" in result.stderr
