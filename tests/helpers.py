"""Helpers shared by the tests, one copy of each: waiting on a condition (the sandbox's threads and
the live server included), racing threads, reading a balance, and finding inline script in a page.

Waits poll a condition with a deadline instead of sleeping a fixed time: they return as soon as the
thing happened, and a slow machine gets the whole timeout instead of a flaky failure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypeVar

from django.core.signals import request_finished, request_started
from django.db import connection, connections

T = TypeVar("T")


# --- Waiting ------------------------------------------------------------------------------------------
def wait_until(
    fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 15.0, interval: float = 0.1
) -> T:
    """Call fetch() until done(value) holds or `timeout` seconds pass.

    Returns the last value fetched, done or not, so the caller's assert shows what it got.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(predicate: Callable[[], object], *, timeout: float = 15.0, interval: float = 0.1) -> bool:
    """True as soon as predicate() is truthy; False if it still is not after `timeout` seconds."""
    return bool(wait_until(predicate, bool, timeout=timeout, interval=interval))


def sandbox_runs_finished(*run_ids: str, timeout: float = 20.0) -> bool:
    """Wait until the Replicate stand-in's runner threads of these trainings or predictions have
    ended: then every webhook they were going to send has been sent, dropped or held back for good.

    The runner threads are named `sandbox-replicate-<id>` (sandbox.replicate.simulation._in_thread).
    """
    names = {f"sandbox-replicate-{run_id}" for run_id in run_ids}
    return wait_for(
        lambda: not any(t.name in names and t.is_alive() for t in threading.enumerate()), timeout=timeout
    )


# The names sandbox/replicate/simulation.py and sandbox/stripe/services.py give their threads.
SANDBOX_THREADS = ("sandbox-replicate-", "sandbox-stripe-webhooks")


def sandbox_settle(*, timeout: float = 20.0) -> bool:
    """Stop what a test left running in the sandbox and wait until it has stopped.

    The Replicate stand-in's runner threads end once their run's row is gone, so the rows are deleted
    (the test's data is flushed next anyway); then this waits for every sandbox thread (runners and
    Stripe's webhook senders) and for the live server to be idle. Left running, they would deliver
    webhooks into the next test through the same live server, or hold the database while it is
    flushed. True when all has stopped within `timeout` seconds.
    """
    from sandbox.replicate.models import SandboxPrediction, SandboxTraining

    SandboxTraining.objects.all().delete()
    SandboxPrediction.objects.all().delete()
    threads_ended = wait_for(
        lambda: not any(t.name.startswith(SANDBOX_THREADS) and t.is_alive() for t in threading.enumerate()),
        timeout=timeout,
    )
    return live_server_idle(timeout=timeout) and threads_ended


class _RequestsInFlight:
    """The threads other than the main one that are handling a request: live-server threads.

    (The test client handles requests in the main thread, and a streaming response it never read
    never finishes; a thread that died mid-request is not counted either.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def started(self, **kwargs: object) -> None:
        if threading.current_thread() is not threading.main_thread():
            with self._lock:
                self._threads.add(threading.current_thread())

    def finished(self, **kwargs: object) -> None:
        with self._lock:
            self._threads.discard(threading.current_thread())

    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)


_in_flight = _RequestsInFlight()
request_started.connect(_in_flight.started, dispatch_uid="tests.helpers.requests_in_flight")
request_finished.connect(_in_flight.finished, dispatch_uid="tests.helpers.requests_in_flight")


def live_server_idle(*, timeout: float = 15.0) -> bool:
    """Wait until the live server handles no request, e.g. one the sandbox keeps sleeping in after the
    client gave up on it: its thread would otherwise still use the database when the test's data is
    flushed. True when idle, False if still busy after `timeout` seconds."""
    return wait_for(lambda: not _in_flight.busy(), timeout=timeout)


# --- Concurrency ------------------------------------------------------------------------------------
def run_concurrently(fn: Callable[[int], Any], n: int) -> list[Any]:
    """Run fn(i) for i in range(n) in n threads released at the same moment by a barrier.

    Returns each call's result or the exception it raised, in order of i (typed Any: callers check
    for exceptions first, then read the results). Each thread closes its
    database connections when done. Races are real only on PostgreSQL (SQLite ignores
    select_for_update), so tests that rely on them are marked `postgres`.
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


# --- Credits ----------------------------------------------------------------------------------------
def balance(user) -> int:
    """The user's cached balance on the wallet row (the wallet must exist)."""
    from billing.models import Wallet

    return Wallet.objects.get(user=user).balance


# --- Inline script ----------------------------------------------------------------------------------
class _InlineScriptFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def _check(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        # Whatever its nonce or type, a script without src is inline (type="application/json" data
        # included: a page under our CSP has no reason to carry one).
        if tag == "script" and "src" not in names:
            self.found.append(self.get_starttag_text() or "<script>")
        for name, value in attrs:
            if name.startswith("on"):  # onclick=, onload=, onerror=…: all inline script
                self.found.append(f"<{tag} {name}=…>")
            elif name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}={value!r}>")


def inline_scripts(html: str | bytes) -> list[str]:
    """Every inline script in html: <script> tags without a src attribute (nonce= or type= make no
    difference), event-handler attributes (onclick= and the like) and javascript: URLs."""
    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    finder = _InlineScriptFinder()
    finder.feed(html)
    finder.close()
    return finder.found


def assert_no_inline_script(html: str | bytes) -> None:
    """Fail, naming what was found, if html holds any inline script (see inline_scripts)."""
    found = inline_scripts(html)
    assert not found, f"inline script under a CSP without 'unsafe-inline': {found}"


def cold_queries(client, url: str, **headers: Any) -> tuple[Any, int]:
    """GET `url` with an empty cache and return (response, number of queries): the page's worst case.
    Counts are compared cold because what the cache holds (a rendered fragment, the layout's
    balance) saves queries on a warm request, and a test that grows the rows also changes which
    fragments are warm."""
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **headers)
    return response, len(queries)


def worker_env(base_url: str, media_root: Path, hf_root: Path, var_dir: Path) -> dict[str, str]:
    """The environment of a `manage.py qcluster` process beside this test run: the same database
    (the test database, SQLite file or PostgreSQL), the sandbox at `base_url`, the given files."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    if db["ENGINE"].endswith("sqlite3"):
        env["SQLITE_PATH"] = str(db["NAME"])
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    env.update(
        SITE_URL=base_url,
        SANDBOX_MODE="true",
        DEBUG="true",
        SANDBOX_TRAINING_SECONDS="3",
        MEDIA_ROOT=str(media_root),
        SANDBOX_HF_ROOT=str(hf_root),
        FLUXSITE_VAR_DIR=str(var_dir),
        Q_WORKERS="1",
        PYTHONUNBUFFERED="1",
    )
    return env
