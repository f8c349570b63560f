"""A dataset's ZIP fetched from a URL the person gave (the API's "photos from a ZIP URL").

Through fluxsite.integrations.downloads, the one downloader: each hop (at most 3 redirects) checked
like the first URL and connected only to the addresses that check verified, a size cap counted
while reading, a per-read timeout and an overall deadline. Only hosts listed in
TRAINING_ZIP_URL_HOSTS (empty: the feature is off), over https, resolving only to public
addresses; the sandbox (SANDBOX_MODE, all local) also allows http and local addresses, never an
unlisted host.
"""

from __future__ import annotations

from typing import IO
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from fluxsite.integrations import downloads
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.replicate_files import host_allowed

SERVICE = "zip_url"
MAX_REDIRECTS = 3
DEADLINE_SECONDS = 300
READ_TIMEOUT_SECONDS = 30


def _refusal(message: str, *, category: Category = Category.VALIDATION, detail: str = "") -> IntegrationError:
    return IntegrationError(service=SERVICE, category=category, message=message, detail=detail or message)


def zip_url_check(url: str) -> tuple[str, ...]:
    """Raise IntegrationError(validation) unless `url` may be fetched; returns the addresses its
    host resolved to, the only ones the download may connect to (no DNS rebinding)."""
    allowed = {h.lower() for h in settings.TRAINING_ZIP_URL_HOSTS}
    if not allowed:
        raise _refusal("Adding photos from a ZIP URL is turned off on this site.")
    parsed = urlparse(url)
    try:
        host, port = (parsed.hostname or "").lower(), parsed.port
    except ValueError:  # a port that is not a number
        host, port = "", None
    if parsed.scheme not in ("http", "https") or not host or parsed.username or parsed.password:
        raise _refusal("Enter the ZIP's https:// address.")
    if parsed.scheme != "https" and not settings.SANDBOX_MODE:
        raise _refusal("The ZIP's URL must use https.", detail=url)
    if not host_allowed(host, allowed):
        raise _refusal(f"ZIPs are only fetched from {', '.join(sorted(allowed))}, not {host}.")
    try:
        addresses = downloads.host_addresses(host, port or (443 if parsed.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        raise _refusal(
            f"{host} does not resolve: check the address.", category=Category.NETWORK, detail=repr(exc)
        )
    if not settings.SANDBOX_MODE and (not addresses or not all(downloads.ip_is_public(a) for a in addresses)):
        raise _refusal(
            f"{host} resolves to a private, loopback or link-local address: ZIPs are fetched only "
            "from public addresses.",
            detail=f"{host} -> {sorted(addresses)}",
        )
    return addresses


def _check_response(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise _refusal(
            f"The ZIP's URL answered HTTP {response.status_code}.",
            category=Category.FILE_ERROR if response.status_code < 500 else Category.SERVICE_ERROR,
            detail=f"HTTP {response.status_code}",
        )


def _failure(kind: downloads.Failure, detail: str, cap: int) -> IntegrationError:
    if kind in ("too_large_declared", "too_large"):
        return _refusal(
            f"The ZIP is larger than {filesizeformat(cap)}, the most one upload may carry: nothing was added.",
            category=Category.FILE_ERROR,
            detail=detail,
        )
    if kind == "too_many_redirects":
        return _refusal("The ZIP's URL redirected too many times.", detail=detail)
    if kind == "timeout":
        return _refusal("Fetching the ZIP took too long.", category=Category.TIMEOUT, detail=detail)
    return _refusal("The ZIP could not be fetched.", category=Category.NETWORK, detail=detail)


def zip_fetch(*, url: str, sink: IO[bytes], cap_bytes: int) -> int:
    """GET the ZIP at `url` into `sink` (at most `cap_bytes`, else nothing is kept by the caller);
    returns its size. Raises IntegrationError with a message to show."""
    return downloads.download(
        url=url,
        check=zip_url_check,
        sink=sink,
        cap_bytes=cap_bytes,
        deadline_seconds=float(DEADLINE_SECONDS),
        read_timeout_seconds=float(READ_TIMEOUT_SECONDS),
        headers_for=lambda hop_url: {"user-agent": "Fluxsite/1"},  # no credential goes to any hop
        max_redirects=MAX_REDIRECTS,
        on_response=_check_response,
        fail=lambda kind, detail: _failure(kind, detail, cap_bytes),
    )
