"""Optional Sentry: imported only with SENTRY_DSN, and every event scrubbed as error mails are.

The end-to-end test runs the real sentry-sdk against a local HTTP server standing in for Sentry's
ingest endpoint (the envelope endpoint of the DSN's project), and reads what was actually sent.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fluxsite.test_production_config import import_wsgi

SECRET = "sk_live_sentrysecret0123456789"
DB_PASSWORD = "pg-pass-hunter2"


@pytest.fixture
def secret_settings(settings):
    settings.STRIPE_SECRET_KEY = SECRET
    settings.DATABASE_URL = f"postgres://fluxsite:{DB_PASSWORD}@db.internal:5432/fluxsite"
    return settings


def test_an_event_is_scrubbed_by_key_and_by_value(secret_settings):
    from fluxsite.integrations.sentry import event_scrub

    event = {
        "exception": {"values": [{"type": "RuntimeError", "value": f"Stripe refused {SECRET}"}]},
        "request": {"headers": {"Authorization": "Bearer abc123456789", "Accept": "text/html"}},
        "extra": {"api_token": "anything-at-all", "note": f"connect to {secret_settings.DATABASE_URL}"},
        "breadcrumbs": {"values": [{"message": f"retrying with {SECRET}"}]},
    }
    scrubbed = event_scrub(event, {})
    text = repr(scrubbed)
    assert SECRET not in text and DB_PASSWORD not in text and "abc123456789" not in text
    assert "anything-at-all" not in text
    assert scrubbed["request"]["headers"]["Accept"] == "text/html"
    assert scrubbed["exception"]["values"][0]["type"] == "RuntimeError"


@pytest.fixture
def ingest():
    """A stand-in for Sentry's ingest: keeps every envelope POSTed to it."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/1", received
    server.shutdown()


def test_an_exception_reaches_sentry_without_its_secrets(secret_settings, ingest):
    import sentry_sdk

    from fluxsite.integrations.sentry import sentry_init

    dsn, received = ingest
    sentry_init(dsn=dsn, environment="test", release="", traces_sample_rate=0.0)
    try:
        api_key = SECRET  # noqa: F841  (a frame variable, as a real client function would hold)
        try:
            raise RuntimeError(f"Stripe refused {SECRET} at {secret_settings.DATABASE_URL}")
        except RuntimeError as exc:
            sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=10)
    finally:
        sentry_sdk.init()  # no DSN: nothing more is sent by later tests
    sent = b"".join(received).decode("utf-8", "replace")
    assert "RuntimeError" in sent
    assert "Stripe refused" in sent
    assert SECRET not in sent
    assert DB_PASSWORD not in sent


def test_without_a_dsn_sentry_is_not_even_imported(tmp_path):
    result = import_wsgi({}, tmp_path, "import fluxsite.wsgi, sys\nprint('sentry_sdk' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_with_a_dsn_the_client_starts_with_the_scrubber(tmp_path):
    code = (
        "import fluxsite.wsgi, sentry_sdk\n"
        "client = sentry_sdk.get_client()\n"
        "print(client.is_active(), client.options['before_send'].__name__, client.should_send_default_pii())"
    )
    result = import_wsgi({"SENTRY_DSN": "http://publickey@127.0.0.1:9/1"}, tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True event_scrub False"
