"""The one downloader (fluxsite/integrations/downloads.py), over real HTTP to servers on 127.0.0.1.

DNS is the one thing these tests fake (socket.getaddrinfo for made-up names), because a
rebinding name is exactly a resolver that answers differently the second time; and the TCP
connect is recorded (socket.create_connection, which httpcore's sync backend calls) so a test
can see which address the download connected to.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import pytest

from fluxsite.integrations import downloads
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.replicate_files import weights_fetch

PUBLIC = "93.184.216.34"  # a public address (documentation's example.com); never really dialled here


class Server:
    """An HTTP server on 127.0.0.1: `routes` maps a path to a function that answers the request.
    Records each request's path and its Authorization and Host headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.seen: list[tuple[str, str | None, str | None]] = []
        routes, seen = self.routes, self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Host")))
                routes.get(self.path, _not_found)(self)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _not_found(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(404)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def _body(data: bytes, *, length: bool = True) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        else:
            handler.send_header("Connection", "close")  # the body ends when the connection does
        handler.end_headers()
        handler.wfile.write(data)
        if not length:
            handler.close_connection = True

    return answer


def _redirect(location: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def _trickle(total: int, every: float) -> Callable[[BaseHTTPRequestHandler], None]:
    """Headers at once, then one byte every `every` seconds: no read ever waits long."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        handler.wfile.flush()
        try:
            for _ in range(total):
                time.sleep(every)
                handler.wfile.write(b"x")
                handler.wfile.flush()
        except OSError:  # the client gave up, as it should
            pass

    return answer


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def dns(monkeypatch):
    """Fake answers for made-up names (name -> a function of the call number); real DNS otherwise.
    `dns.calls` counts the lookups of each faked name."""

    class Fake:
        answers: dict[str, Callable[[int], str]] = {}
        calls: dict[str, int] = {}

    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host in Fake.answers:
            Fake.calls[host] = Fake.calls.get(host, 0) + 1
            address = Fake.answers[host](Fake.calls[host])
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return Fake


@pytest.fixture
def connects(monkeypatch, server):
    """Records every TCP connect's address; a connect to PUBLIC reaches the test server instead,
    so a download pinned to the checked public address can complete and show what it got."""
    seen: list[tuple[str, int]] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        seen.append((address[0], address[1]))
        if address[0] == PUBLIC:
            address = ("127.0.0.1", server.port)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def public_only(url: str) -> tuple[str, ...]:
    """A check like the weights' in production, minus https: resolve once, every address public."""
    import httpx

    parsed = httpx.URL(url)
    addresses = downloads.host_addresses(parsed.host, parsed.port or 80)
    if not all(downloads.ip_is_public(a) for a in addresses):
        raise IntegrationError(
            service="test", category=Category.VALIDATION, message="private address", detail=str(addresses)
        )
    return addresses


def any_address(url: str) -> tuple[str, ...]:
    import httpx

    parsed = httpx.URL(url)
    return downloads.host_addresses(parsed.host, parsed.port or 80)


def fail(kind: downloads.Failure, detail: str) -> IntegrationError:
    category = Category.TIMEOUT if kind == "timeout" else Category.FILE_ERROR
    return IntegrationError(service="test", category=category, message=kind, detail=detail)


def _get(url: str, **overrides) -> bytes:
    sink = BytesIO()
    arguments = {
        "check": public_only,
        "cap_bytes": 10_000,
        "deadline_seconds": 10.0,
        "read_timeout_seconds": 5.0,
        "headers_for": lambda _url: {},
        "max_redirects": 3,
        "on_response": lambda _response: None,
        "fail": fail,
        **overrides,
    }
    downloads.download(url=url, sink=sink, **arguments)
    return sink.getvalue()


# --- (a) The connection goes to the address that was checked ------------------------------------------------
def test_a_rebinding_name_is_connected_to_the_public_address_it_was_checked_with(server, dns, connects):
    dns.answers["rebind.test"] = lambda n: PUBLIC if n == 1 else "127.0.0.1"
    server.routes["/file"] = _body(b"the file")
    assert _get(f"http://rebind.test:{server.port}/file") == b"the file"
    assert dns.calls["rebind.test"] == 1  # looked up once, by the check; never again by the connection
    assert connects == [(PUBLIC, server.port)]
    assert server.seen == [("/file", None, f"rebind.test:{server.port}")]  # the Host header is the name


def test_each_hop_is_looked_up_once_and_a_hop_that_now_resolves_privately_is_refused(server, dns, connects):
    dns.answers["rebind.test"] = lambda n: PUBLIC if n == 1 else "127.0.0.1"
    server.routes["/first"] = _redirect("/second")
    server.routes["/second"] = _body(b"never served")
    with pytest.raises(IntegrationError, match="private address"):
        _get(f"http://rebind.test:{server.port}/first")
    assert dns.calls["rebind.test"] == 2  # one lookup per hop, each by the check
    assert connects == [(PUBLIC, server.port)]  # the second hop never connected
    assert [path for path, _, _ in server.seen] == ["/first"]


def test_in_production_a_weights_host_resolving_to_loopback_is_refused_before_connecting(
    settings, dns, connects, tmp_path
):
    settings.SANDBOX_MODE = False
    settings.REPLICATE_DOWNLOAD_HOSTS = ["replicate.delivery", "*.replicate.delivery"]
    dns.answers["rebind.replicate.delivery"] = lambda n: "127.0.0.1"
    with pytest.raises(IntegrationError) as err:
        weights_fetch(url="https://rebind.replicate.delivery/x/trained_model.tar", dest_dir=tmp_path)
    assert err.value.category == Category.VALIDATION and "private address" in err.value.message
    assert connects == [] and list(tmp_path.iterdir()) == []


def test_a_name_the_check_did_not_return_addresses_for_is_never_resolved_by_the_connection(
    server, dns, connects
):
    dns.answers["rebind.test"] = lambda n: "127.0.0.1"
    with pytest.raises(IntegrationError) as err:
        _get(f"http://rebind.test:{server.port}/file", check=lambda _url: ())
    assert err.value.message == "network"
    assert connects == [] and "rebind.test" not in dns.calls


# --- (b) An overall deadline, not only a per-read timeout ----------------------------------------------------
def test_a_server_trickling_bytes_is_stopped_by_the_overall_deadline(server):
    server.routes["/slow"] = _trickle(total=100, every=0.5)
    started = time.monotonic()
    with pytest.raises(IntegrationError) as err:
        # Each byte comes well within the 5 s per-read timeout; only the 2 s deadline can stop this.
        _get(
            f"http://127.0.0.1:{server.port}/slow",
            check=any_address,
            deadline_seconds=2.0,
            read_timeout_seconds=5.0,
        )
    elapsed = time.monotonic() - started
    assert err.value.message == "timeout" and err.value.category == Category.TIMEOUT
    assert 1.5 < elapsed < 3.0


def test_the_weights_download_times_out_at_its_deadline(settings, server, tmp_path):
    settings.SANDBOX_MODE = True
    settings.SITE_URL = f"http://127.0.0.1:{server.port}"
    settings.REPLICATE_DOWNLOAD_DEADLINE_SECONDS = 2
    settings.REPLICATE_TIMEOUT_SECONDS = 5
    server.routes["/t.tar"] = _trickle(total=100, every=0.5)
    started = time.monotonic()
    with pytest.raises(IntegrationError) as err:
        weights_fetch(url=f"http://127.0.0.1:{server.port}/t.tar", dest_dir=tmp_path)
    assert time.monotonic() - started < 3.0
    assert (
        err.value.category == Category.TIMEOUT and err.value.message == "Downloading the weights timed out."
    )
    assert err.value.retryable is True and list(tmp_path.iterdir()) == []


# --- (c) Redirects: every hop checked again, headers asked for again ----------------------------------------
def test_a_redirect_to_another_host_is_checked_again_and_does_not_carry_the_token(dns):
    first, second = Server(), Server()
    try:
        dns.answers["a.test"] = dns.answers["b.test"] = lambda n: "127.0.0.1"
        first.routes["/go"] = _redirect(f"http://b.test:{second.port}/file")
        second.routes["/file"] = _body(b"the file")
        checked: list[str] = []

        def check(url: str) -> tuple[str, ...]:
            checked.append(url)
            return any_address(url)

        def headers_for(url: str) -> dict[str, str]:
            return {"Authorization": "Bearer secret-token"} if url.startswith("http://a.test:") else {}

        assert _get(f"http://a.test:{first.port}/go", check=check, headers_for=headers_for) == b"the file"
        assert checked == [f"http://a.test:{first.port}/go", f"http://b.test:{second.port}/file"]
        assert first.seen == [("/go", "Bearer secret-token", f"a.test:{first.port}")]
        assert second.seen == [("/file", None, f"b.test:{second.port}")]
    finally:
        first.close()
        second.close()


def test_a_redirect_the_check_refuses_is_not_followed(server, dns):
    dns.answers["a.test"] = lambda n: "127.0.0.1"
    server.routes["/go"] = _redirect("http://10.0.0.7/internal")

    def check(url: str) -> tuple[str, ...]:
        if "10.0.0.7" in url:
            raise IntegrationError(service="test", category=Category.VALIDATION, message="refused")
        return any_address(url)

    with pytest.raises(IntegrationError, match="refused"):
        _get(f"http://a.test:{server.port}/go", check=check)
    assert [path for path, _, _ in server.seen] == ["/go"]


def test_too_many_redirects_stop(server):
    server.routes["/loop"] = _redirect("/loop")
    with pytest.raises(IntegrationError) as err:
        _get(f"http://127.0.0.1:{server.port}/loop", check=any_address, max_redirects=2)
    assert err.value.message == "too_many_redirects" and len(server.seen) == 3


# --- (d) The size cap ----------------------------------------------------------------------------------------
def test_a_body_without_a_length_is_stopped_mid_stream_at_the_cap(server):
    server.routes["/big"] = _body(b"x" * 50_000, length=False)
    sink = BytesIO()
    with pytest.raises(IntegrationError) as err:
        downloads.download(
            url=f"http://127.0.0.1:{server.port}/big",
            check=any_address,
            sink=sink,
            cap_bytes=1000,
            deadline_seconds=10,
            read_timeout_seconds=5,
            headers_for=lambda _url: {},
            max_redirects=0,
            on_response=lambda _response: None,
            fail=fail,
        )
    assert err.value.message == "too_large"
    assert sink.tell() <= 1000


def test_a_declared_length_over_the_cap_is_refused_before_reading(server):
    server.routes["/big"] = _body(b"x" * 5000)
    with pytest.raises(IntegrationError) as err:
        _get(f"http://127.0.0.1:{server.port}/big", check=any_address, cap_bytes=1000)
    assert err.value.message == "too_large_declared"


# --- TLS still speaks to the name, though the connection goes to a pinned address ---------------------------
def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    x509 = pytest.importorskip("cryptography.x509")
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize(("certificate_for", "served"), [("secure.test", True), ("someone-else.test", False)])
def test_tls_verifies_the_certificate_against_the_name_and_sends_it_as_sni(
    server, dns, monkeypatch, tmp_path, certificate_for, served
):
    import ssl

    import httpx

    cert, key = _self_signed(tmp_path, certificate_for)
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    # Trust only this certificate: the downloader's client context, with our root instead of certifi's.
    monkeypatch.setattr(httpx, "create_ssl_context", lambda **_: ssl.create_default_context(cafile=cert))
    dns.answers["secure.test"] = lambda n: "127.0.0.1"
    server.routes["/file"] = _body(b"over tls")
    url = f"https://secure.test:{server.port}/file"
    if served:
        assert _get(url, check=any_address) == b"over tls"
    else:
        with pytest.raises(IntegrationError) as err:
            _get(url, check=any_address)
        assert err.value.message == "network" and "CERTIFICATE_VERIFY_FAILED" in err.value.detail
    assert names[:1] == ["secure.test"] and dns.calls["secure.test"] == 1
