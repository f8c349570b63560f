"""Downloading a training's weights and a prediction's images: our Replicate token goes to
Replicate's own hosts and to nobody else, redirects included (issue 11).

Output files are served by replicate.delivery and its subdomains
(https://replicate.com/docs/topics/predictions/output-files); replicate-python 1.0.x reads them
with its API client, so with the token (replicate/helpers.py FileOutput). Over HTTP the two
downloaders are checked against recording servers: one stands at REPLICATE_BASE_URL (Replicate's
host, as the sandbox is in sandbox mode), the other is any other host.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from django.utils import timezone

from fluxsite.integrations import replicate_client
from fluxsite.integrations.errors import IntegrationError
from fluxsite.integrations.replicate_files import (
    host_allowed,
    image_download,
    output_url_check,
    weights_fetch,
)
from tests.models_app.conftest import good_tar

TOKEN = "r8_test_token_that_must_not_leak_0001"
WEIGHTS = good_tar()
IMAGE = b"RIFF\x1a\x00\x00\x00WEBPVP8 not decoded by the downloader"


class Recorder:
    """An HTTP server on 127.0.0.1 that serves `routes` (path -> bytes, or ("redirect", url)) and
    records each request's path and Authorization header."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.seen: list[tuple[str, str | None]] = []
        routes, seen = self.routes, self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                seen.append((self.path, self.headers.get("Authorization")))
                route = routes.get(self.path)
                if isinstance(route, tuple):
                    self.send_response(302)
                    self.send_header("Location", route[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = route if isinstance(route, bytes) else b""
                self.send_response(200 if isinstance(route, bytes) else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replicate_host(settings):
    """Replicate's host, where REPLICATE_BASE_URL points (as it points at the sandbox in sandbox mode)."""
    server = Recorder()
    settings.SANDBOX_MODE = True
    settings.REPLICATE_API_TOKEN = TOKEN
    settings.REPLICATE_BASE_URL = f"http://127.0.0.1:{server.port}/sandbox/replicate"
    yield server
    server.close()


@pytest.fixture
def other_host(settings):
    """Another host: reached as "localhost", which sandbox mode lets us download from (SITE_URL's host)."""
    server = Recorder()
    settings.SITE_URL = f"http://localhost:{server.port}"
    yield server
    server.close()


def _at(server: Recorder, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def _elsewhere(server: Recorder, path: str) -> str:
    return f"http://localhost:{server.port}{path}"


# --- The rule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://replicate.delivery/yhqm/zhBT5Cu9HFZVCZC9ecfY80gCXM9uCtA1f5vJe7MHSoJRIx3NB/out-0.jpg", True),
        (
            "https://pbxt.replicate.delivery/JMV5OrEWpBAC5gO8rre0tPOyJIOkaXvG0TWfVJ9b4zhLeEUY/trained_model.tar",
            True,
        ),
        ("https://xezq.replicate.delivery/a/b/out-1.webp", True),
        ("https://api.replicate.com/v1/files/cneqzikepnug6xezperrr4z55o", True),
        ("https://REPLICATE.delivery/x/out-0.png", True),
        ("http://replicate.delivery/x/out-0.png", False),  # never over plain http
        ("https://replicate.delivery:8443/x/out-0.png", False),
        ("https://replicate.delivery.evil.example/x/out-0.png", False),
        ("https://evilreplicate.delivery/x/out-0.png", False),
        ("https://r8_user:secret@replicate.delivery/x/out-0.png", False),
        ("https://huggingface.co/fofr/flux-80s-cyberpunk/resolve/main/lora.safetensors", False),
        ("https://example.com/replicate.delivery/out-0.png", False),
        ("https://replicate.com/account/api-tokens", False),
        ("not a url", False),
        ("https://replicate.delivery:notaport/x", False),
    ],
)
def test_only_replicates_own_hosts_get_the_token(settings, url, sent):
    settings.REPLICATE_API_TOKEN = TOKEN
    settings.REPLICATE_BASE_URL = "https://api.replicate.com"
    assert replicate_client.download_headers(url) == ({"Authorization": f"Bearer {TOKEN}"} if sent else {})


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("http://127.0.0.1:8000/sandbox/replicate/v1/files/trainings/t1/trained_model.tar", True),
        ("http://127.0.0.1:8000/sandbox/replicate", True),
        ("http://127.0.0.1:8000/files/some-signed-token", False),  # our own site, not the sandbox
        ("http://127.0.0.1:8000/sandbox/replicate-lookalike/x", False),
        ("http://127.0.0.1:8001/sandbox/replicate/v1/files/trainings/t1/trained_model.tar", False),
        ("http://localhost:8000/sandbox/replicate/v1/files/trainings/t1/trained_model.tar", False),
        ("https://127.0.0.1:8000/sandbox/replicate/v1/files/trainings/t1/trained_model.tar", False),
    ],
)
def test_in_sandbox_mode_the_sandbox_is_replicates_host(settings, url, sent):
    settings.REPLICATE_API_TOKEN = TOKEN
    settings.REPLICATE_BASE_URL = "http://127.0.0.1:8000/sandbox/replicate/"
    assert bool(replicate_client.download_headers(url)) is sent


def test_without_a_token_nothing_is_sent(settings):
    settings.REPLICATE_API_TOKEN = ""
    assert replicate_client.download_headers("https://replicate.delivery/x/out-0.png") == {}


def test_any_subdomain_of_a_wildcard_download_host_is_allowed(settings):
    settings.SANDBOX_MODE = False
    settings.REPLICATE_DOWNLOAD_HOSTS = ["replicate.delivery", "*.replicate.delivery"]
    # Resolving a real host is not what this is about: a refusal would come before it, by name.
    for url in ("https://evil.example/x.tar", "https://replicate.delivery.evil.example/x.tar"):
        with pytest.raises(IntegrationError, match="only downloaded from"):
            output_url_check(url)

    allowed = {"replicate.delivery", "*.replicate.delivery"}
    assert host_allowed("xezq.replicate.delivery", allowed) and host_allowed("replicate.delivery", allowed)
    assert not host_allowed("evilreplicate.delivery", allowed)


# --- The weights, over HTTP -------------------------------------------------------------------------
def test_the_weights_download_sends_the_token_to_replicates_host(replicate_host, tmp_path):
    path = "/sandbox/replicate/v1/files/trainings/t1/trained_model.tar"
    replicate_host.routes[path] = WEIGHTS
    assert weights_fetch(url=_at(replicate_host, path), dest_dir=tmp_path).read_bytes() == WEIGHTS
    assert replicate_host.seen == [(path, f"Bearer {TOKEN}")]


def test_the_weights_download_sends_no_token_to_another_host(replicate_host, other_host, tmp_path):
    other_host.routes["/trained_model.tar"] = WEIGHTS
    assert (
        weights_fetch(url=_elsewhere(other_host, "/trained_model.tar"), dest_dir=tmp_path).read_bytes()
        == WEIGHTS
    )
    assert other_host.seen == [("/trained_model.tar", None)]


def test_a_redirect_to_another_host_does_not_carry_the_token(replicate_host, other_host, tmp_path):
    path = "/sandbox/replicate/v1/files/trainings/t1/trained_model.tar"
    replicate_host.routes[path] = ("redirect", _elsewhere(other_host, "/cdn/trained_model.tar"))
    other_host.routes["/cdn/trained_model.tar"] = WEIGHTS
    assert weights_fetch(url=_at(replicate_host, path), dest_dir=tmp_path).read_bytes() == WEIGHTS
    assert replicate_host.seen == [(path, f"Bearer {TOKEN}")]
    assert other_host.seen == [("/cdn/trained_model.tar", None)]


def test_a_redirect_from_another_host_to_replicate_gets_the_token_only_there(
    replicate_host, other_host, tmp_path
):
    path = "/sandbox/replicate/v1/files/trainings/t1/trained_model.tar"
    other_host.routes["/go"] = ("redirect", _at(replicate_host, path))
    replicate_host.routes[path] = WEIGHTS
    weights_fetch(url=_elsewhere(other_host, "/go"), dest_dir=tmp_path)
    assert other_host.seen == [("/go", None)]
    assert replicate_host.seen == [(path, f"Bearer {TOKEN}")]


# --- A prediction's images, over HTTP ------------------------------------------------------------------
def test_an_output_image_download_sends_the_token_to_replicates_host_only(replicate_host, other_host):
    path = "/sandbox/replicate/v1/files/predictions/p1/out-0.webp"
    replicate_host.routes[path] = IMAGE
    other_host.routes["/out-0.webp"] = IMAGE
    assert image_download(_at(replicate_host, path)) == IMAGE
    assert image_download(_elsewhere(other_host, "/out-0.webp")) == IMAGE
    assert replicate_host.seen == [(path, f"Bearer {TOKEN}")]
    assert other_host.seen == [("/out-0.webp", None)]


def test_an_output_image_redirected_elsewhere_is_not_followed(replicate_host, other_host):
    path = "/sandbox/replicate/v1/files/predictions/p1/out-0.webp"
    replicate_host.routes[path] = ("redirect", _elsewhere(other_host, "/out-0.webp"))
    other_host.routes["/out-0.webp"] = IMAGE
    with pytest.raises(IntegrationError):
        image_download(_at(replicate_host, path))
    assert other_host.seen == []


# --- The sandbox's file endpoint ---------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_sandbox_serves_weights_with_our_token_or_none_and_refuses_a_wrong_one(
    sandbox, settings, tmp_path
):
    from sandbox.replicate.models import SandboxTraining

    long_ago = timezone.now() - timedelta(hours=1)
    SandboxTraining.objects.create(
        id="sbxdl1",
        trainer="ostris/flux-dev-lora-trainer",
        trainer_version="v" * 64,
        destination="fluxsite/dl",
        input={"trigger_word": "TOK", "lora_rank": 4},
        base_url=f"{sandbox}/sandbox/replicate",
        created_at=long_ago,
        duration_seconds=1,
        dataset_checked_at=long_ago,
    )
    url = f"{sandbox}/sandbox/replicate/v1/files/trainings/sbxdl1/trained_model.tar"
    assert replicate_client.download_headers(url) == {
        "Authorization": f"Bearer {settings.REPLICATE_API_TOKEN}"
    }
    assert weights_fetch(url=url, dest_dir=tmp_path).stat().st_size > 0  # our downloader, token included
    assert httpx.get(url, timeout=10).status_code == 200  # like replicate.delivery: the URL suffices
    wrong = httpx.get(url, headers={"Authorization": "Bearer r8_not_ours"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["title"] == "Unauthenticated"
