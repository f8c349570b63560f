"""Log lines an operator can follow: a request id on every line, and JSON lines when configured.

The request id comes from the X-Request-ID header when it is a sane token (the proxy's or the
load balancer's, so its logs and ours join), or is made here; fluxsite.middleware.RequestIdMiddleware
sets it for the request and answers with it. A django-q2 task carries the id of whatever enqueued
it (`task_request_id_attach` on pre_enqueue), and the worker sets it while the task runs, so the
task's lines carry the id of the request that caused them. One context variable holds it; the
`RequestIdFilter` on the console handler (settings.LOGGING) copies it onto every record.

Every formatter here scrubs secrets as fluxsite.reporting does for error mails.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from fluxsite.reporting import scrub_text

REQUEST_ID: ContextVar[str] = ContextVar("fluxsite_request_id", default="")
HEADER = "X-Request-ID"
# What a client may name its request: a UUID, a hex or base64url token, a proxy's "host-1234.5";
# nothing that could break a log line (spaces, quotes, newlines) and nothing long.
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")
_TASK_KEY = "fluxsite_request_id"  # our key in a django-q2 task package


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_valid(value: str | None) -> str | None:
    """`value` when it is an acceptable request id (8-128 characters of [A-Za-z0-9._:-]), else None."""
    if value and _VALID.match(value):
        return value
    return None


def request_id_get() -> str:
    return REQUEST_ID.get()


def request_id_clear(**kwargs: Any) -> None:
    """request_finished: a thread's next request, or anything it logs meanwhile, starts without one."""
    REQUEST_ID.set("")


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record ("-" outside a request or task), so formats can name it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get() or "-"
        return True


def _record_request_id(record: logging.LogRecord) -> str | None:
    found = getattr(record, "request_id", None)
    if found and found != "-":
        return str(found)
    return REQUEST_ID.get() or None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (and the traceback).

    Each string is scrubbed before encoding: scrubbing the encoded line would miss a secret whose
    characters JSON escapes.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
            # null, not the plain format's "-", when there is none: a query for it stays simple
            "request_id": _record_request_id(record),
        }
        if record.exc_info:
            line["exception"] = scrub_text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = scrub_text(record.exc_text)
        if record.stack_info:
            line["stack"] = scrub_text(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False)


# --- django-q2: the enqueuing request's id travels with the task -----------------------------------
_running: dict[str, Token[str]] = {}


def task_request_id_attach(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """pre_enqueue: the task package carries the current request id (none outside a request)."""
    current = REQUEST_ID.get()
    if current and _TASK_KEY not in task:
        task[_TASK_KEY] = current


def task_request_id_enter(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """pre_execute, in the worker: the task's lines carry the id it was enqueued with.

    A task enqueued outside any request (a schedule, a command) gets its own, so its lines
    still hang together. The previous value is restored when the task ends (a synchronous
    task runs inside the request that enqueued it).
    """
    request_id = request_id_valid(task.get(_TASK_KEY)) or request_id_new()
    _running[str(task.get("id"))] = REQUEST_ID.set(request_id)


def task_request_id_leave(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
    """post_execute_in_worker: back to what was there before the task."""
    token = _running.pop(str(task.get("id")), None)
    if token is not None:
        REQUEST_ID.reset(token)


def signals_connect() -> None:
    from django.core.signals import request_finished
    from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

    request_finished.connect(request_id_clear, dispatch_uid="fluxsite.logs.clear")
    pre_enqueue.connect(task_request_id_attach, dispatch_uid="fluxsite.logs.attach")
    pre_execute.connect(task_request_id_enter, dispatch_uid="fluxsite.logs.enter")
    post_execute_in_worker.connect(task_request_id_leave, dispatch_uid="fluxsite.logs.leave")
