"""Downloading a file from a URL someone else gave us (a vendor's JSON, a redirect): the one copy.

Two things make such a download safe beyond checking the URL once:

- The connection goes to an address that was checked. A check that resolves the name and a
  connection that resolves it again can get two different answers (DNS rebinding: public to
  the check, 127.0.0.1 to the connection). Here the caller's `check` resolves the name once per
  hop and returns the addresses it verified; the network backend below connects only to those,
  and refuses any name it was not given. httpx still sees the real host name, so the Host
  header, TLS SNI and certificate verification are exactly as without pinning.
- Every download has an overall deadline, not only a per-read timeout: a server trickling one
  byte every few seconds never trips a per-read timeout. Every socket operation's timeout is
  clamped to the time left, and the deadline is checked again between chunks.

Redirects are followed by hand, each hop checked again, its headers asked for again (so a token
meant for one host is never sent to the next), at most `max_redirects` of them. The size cap is
enforced by Content-Length before reading and by counting while reading.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from typing import IO, Literal
from urllib.parse import urljoin

import httpcore
import httpx

from fluxsite.integrations.errors import IntegrationError

CHUNK = 1024 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0

# What went wrong, for the caller's `fail` to turn into its own IntegrationError and message.
Failure = Literal["too_large_declared", "too_large", "timeout", "network", "too_many_redirects"]


# --- Addresses --------------------------------------------------------------------------------------------
def ip_is_public(value: str) -> bool:
    """True for an address on the public internet (not private, loopback, link-local, ...)."""
    ip = ipaddress.ip_address(value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def host_addresses(host: str, port: int) -> tuple[str, ...]:
    """Resolve `host` once; its addresses in the resolver's order, without repeats. Raises OSError."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    # sockaddr[0] is typed str | int for exotic families; a TCP address is always a str.
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


# --- The pinned network backend ------------------------------------------------------------------------------
class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def clamp(self, timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
        """`timeout` shortened to the time left; raises `expired` when none is left."""
        left = self.left()
        if left <= 0:
            raise expired("The download's overall deadline has passed.")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout=self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout=self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(
            ssl_context,
            server_hostname=server_hostname,
            timeout=self._deadline.clamp(timeout, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects a host name only to the addresses its check returned, never resolving it itself."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline
        self.pins: dict[str, tuple[str, ...]] = {}

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options=None,
    ) -> httpcore.NetworkStream:
        addresses = self.pins.get(host.lower(), ())
        if not addresses:
            raise httpcore.ConnectError(f"{host} was not checked before connecting; refusing to resolve it.")
        failure: Exception | None = None
        for address in addresses:  # the next checked address when one does not answer, like a browser
            try:
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=self._deadline.clamp(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure  # type: ignore[misc]

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore.ConnectError("Downloads never use a Unix socket.")

    def sleep(self, seconds: float) -> None:
        # Part of httpcore's NetworkBackend interface, not a retry loop of ours: the pool calls it
        # only between connect retries, and this pool has none (ConnectionPool's retries=0). The
        # one "retry" here is connect_tcp's walk over the other checked addresses, without waiting.
        self._inner.sleep(seconds)


class _PinnedTransport(httpx.HTTPTransport):
    def __init__(self, backend: _PinnedBackend) -> None:
        # No proxy, no .netrc, no SSL_* from the environment: the connection goes where we checked.
        super().__init__(trust_env=False)
        # httpx 0.28's HTTPTransport takes no network backend, but its pool is httpcore's, which
        # does (httpcore 1.0 ConnectionPool(network_backend=)); httpx's handle_request, with its
        # error mapping, is kept. tests/integrations/test_downloads.py fails if this stops working.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_keepalive_connections=0,  # every hop opens its own connection to its own checked address
            network_backend=backend,
        )


# --- The download -------------------------------------------------------------------------------------------
def download(
    *,
    url: str,
    check: Callable[[str], Sequence[str]],
    sink: IO[bytes],
    cap_bytes: int,
    deadline_seconds: float,
    read_timeout_seconds: float,
    headers_for: Callable[[str], dict[str, str]],
    max_redirects: int,
    on_response: Callable[[httpx.Response], None],
    fail: Callable[[Failure, str], IntegrationError],
) -> int:
    """GET `url` into `sink`; returns the number of bytes written.

    Per hop: `check(url)` refuses the URL by raising, or returns the addresses it verified, and the
    connection goes to one of those; `headers_for(url)` gives that hop's headers. The final
    (non-redirect) response goes to `on_response`, which raises to refuse it (a status the caller
    does not accept). The whole download, redirects included, ends within `deadline_seconds`; no
    single read waits longer than `read_timeout_seconds`.

    Raises what `check` and `on_response` raise, and otherwise `fail(kind, detail)`: too_large_declared
    (Content-Length over `cap_bytes`), too_large (more than `cap_bytes` arrived), timeout (a read or
    the deadline), network (any other transport failure), too_many_redirects.
    """
    deadline = _Deadline(deadline_seconds)
    backend = _PinnedBackend(deadline)
    timeout = httpx.Timeout(read_timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, read_timeout_seconds))
    try:
        with httpx.Client(
            transport=_PinnedTransport(backend), timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            for _hop in range(max_redirects + 1):
                addresses = tuple(check(url))
                host = httpx.URL(url).raw_host.decode("ascii")  # the name as httpcore will ask for it
                if not addresses:
                    raise fail("network", f"the check of {host} returned no address")
                backend.pins = {host: addresses}  # only this hop's host, only its checked addresses
                with client.stream("GET", url, headers=headers_for(url)) as response:
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        url = urljoin(url, location)
                        continue
                    on_response(response)
                    length = response.headers.get("content-length", "")
                    if length.isdigit() and int(length) > cap_bytes:
                        raise fail("too_large_declared", f"Content-Length {length}")
                    received = 0
                    for chunk in response.iter_bytes(CHUNK):
                        received += len(chunk)
                        if received > cap_bytes:
                            raise fail("too_large", f"more than {cap_bytes} bytes")
                        if deadline.left() <= 0:
                            raise fail("timeout", f"deadline of {deadline_seconds}s passed")
                        sink.write(chunk)
                    return received
            raise fail("too_many_redirects", f"more than {max_redirects} redirects")
    except httpx.TimeoutException as exc:
        raise fail("timeout", repr(exc)) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise fail("network", repr(exc)) from None


# --- A POST to a checked address (outbound webhooks) ------------------------------------------------------
def post_pinned(
    *, url: str, addresses: Sequence[str], content: bytes, headers: dict[str, str], timeout_seconds: float
) -> int:
    """POST `content` to `url`, connecting only to `addresses` (the caller's check of its host: no
    second resolution, so no DNS rebinding), with no redirect followed and the whole exchange within
    `timeout_seconds`. Returns the status code; raises httpx.TimeoutException / httpx.HTTPError."""
    deadline = _Deadline(timeout_seconds)
    backend = _PinnedBackend(deadline)
    backend.pins = {httpx.URL(url).raw_host.decode("ascii"): tuple(addresses)}
    timeout = httpx.Timeout(timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, timeout_seconds))
    with httpx.Client(
        transport=_PinnedTransport(backend), timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        return client.post(url, content=content, headers=headers).status_code
