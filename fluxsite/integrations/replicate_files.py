"""Downloads from Replicate's file hosts: a training's weights tar and a prediction's images.

Every URL here comes from a vendor's JSON, so each hop is checked (https, a host in
REPLICATE_DOWNLOAD_HOSTS, only public addresses, pinned for the connection), the size is capped and
the whole download has a deadline; the transfer itself is fluxsite.integrations.downloads. What
the files hold is checked by the apps (models_app.services.weights, generations.services).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from fluxsite.integrations import downloads, replicate_client
from fluxsite.integrations.errors import Category, IntegrationError

SERVICE = "replicate"
MAX_REDIRECTS = 3


def file_refusal(
    message: str, *, category: Category = Category.FILE_ERROR, detail: str = "", retryable: bool = False
) -> IntegrationError:
    """The error for a file from Replicate we refuse (or could not fetch): the apps use it too."""
    return IntegrationError(
        service=SERVICE, category=category, message=message, detail=detail or message, retryable=retryable
    )


# --- Where we may download from ----------------------------------------------------------------------
def _stand_in_hosts() -> set[str]:
    """The hosts a stand-in of Replicate serves files from: the sandbox's (SITE_URL in sandbox mode)
    and the host of REPLICATE_BASE_URL."""
    hosts = {urlparse(settings.REPLICATE_BASE_URL).hostname}
    if settings.SANDBOX_MODE:
        hosts.add(urlparse(settings.SITE_URL).hostname)
    return {h.lower() for h in hosts if h}


def host_allowed(host: str, allowed: set[str]) -> bool:
    """`host` is listed, or under a listed "*.domain" (outputs come from any subdomain of
    replicate.delivery: https://replicate.com/docs/topics/predictions/output-files)."""
    return host in allowed or any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


def output_url_check(url: str) -> tuple[str, ...]:
    """Raise IntegrationError(validation) unless `url` may be downloaded from; returns the
    addresses its host resolved to, which are the only ones the download may connect to.

    Production: https, host in REPLICATE_DOWNLOAD_HOSTS, and every address it resolves to is a
    public one (so neither the URL nor a redirect can reach our own network). Sandbox mode also
    allows the sandbox's own host, over http, since it is the local server; so does
    REPLICATE_DOWNLOADS_FROM_API_HOST for the host of REPLICATE_BASE_URL (a stand-in of Replicate
    served apart from the site, as in the production-like CI run; never on with the real Replicate).
    """
    parsed = urlparse(url)
    try:
        host, port = (parsed.hostname or "").lower(), parsed.port
    except ValueError:  # a port that is not a number
        host, port = "", None
    if not host or parsed.username or parsed.password:
        raise file_refusal("The weights URL is not a valid download address.", category=Category.VALIDATION)
    sandbox = (
        (settings.SANDBOX_MODE or settings.REPLICATE_DOWNLOADS_FROM_API_HOST)
        and host in _stand_in_hosts()
        and parsed.scheme in ("http", "https")
    )
    if not sandbox:
        if parsed.scheme != "https":
            raise file_refusal("The weights URL must use https.", category=Category.VALIDATION, detail=url)
        allowed = {h.lower() for h in settings.REPLICATE_DOWNLOAD_HOSTS}
        if not host_allowed(host, allowed):
            raise file_refusal(
                f"Weights are only downloaded from {', '.join(sorted(allowed))}, not {host}.",
                category=Category.VALIDATION,
            )
    try:
        addresses = downloads.host_addresses(host, port or (443 if parsed.scheme == "https" else 80))
    except OSError as exc:
        raise IntegrationError(
            service=SERVICE,
            category=Category.NETWORK,
            message="The weights host could not be resolved.",
            detail=repr(exc),
        )
    if not sandbox and (not addresses or not all(downloads.ip_is_public(a) for a in addresses)):
        raise file_refusal(
            "The weights host resolves to a private address; refusing to download.",
            category=Category.VALIDATION,
            detail=f"{host} -> {sorted(addresses)}",
        )
    return addresses


# --- Download ------------------------------------------------------------------------------------------
def weights_fetch(*, url: str, dest_dir: Path) -> Path:
    """Download the weights tar into a new file in `dest_dir`; returns its path.

    Through fluxsite.integrations.downloads: each hop (at most 3 redirects) checked like the first
    URL and connected to the addresses that check verified, a per-read timeout and an overall
    deadline (REPLICATE_DOWNLOAD_DEADLINE_SECONDS). Raises IntegrationError: validation for a
    refused URL, file_error (not retryable) when the file is larger than
    REPLICATE_WEIGHTS_MAX_BYTES or missing (404/410: Replicate has removed it),
    network/timeout/service_error (retryable) otherwise.
    """
    cap = int(settings.REPLICATE_WEIGHTS_MAX_BYTES)
    dest_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=dest_dir, prefix="weights-", suffix=".tar", delete=False)  # noqa: SIM115
    path = Path(handle.name)
    try:
        with handle:
            downloads.download(
                url=url,
                check=output_url_check,
                sink=handle,
                cap_bytes=cap,
                deadline_seconds=float(settings.REPLICATE_DOWNLOAD_DEADLINE_SECONDS),
                read_timeout_seconds=float(settings.REPLICATE_TIMEOUT_SECONDS),
                headers_for=replicate_client.download_headers,
                max_redirects=MAX_REDIRECTS,
                on_response=_check_response,
                fail=lambda kind, detail: _download_failure(kind, detail, cap),
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _download_failure(kind: downloads.Failure, detail: str, cap: int) -> IntegrationError:
    if kind == "too_large_declared":
        return file_refusal(
            f"The weights are larger than the {filesizeformat(cap)} limit; not downloaded.", detail=detail
        )
    if kind == "too_large":
        return file_refusal(
            f"The weights are larger than the {filesizeformat(cap)} limit; download stopped.", detail=detail
        )
    if kind == "too_many_redirects":
        return file_refusal(
            "The weights URL redirected too many times.", category=Category.VALIDATION, detail=detail
        )
    if kind == "timeout":
        return IntegrationError(
            service=SERVICE,
            category=Category.TIMEOUT,
            message="Downloading the weights timed out.",
            detail=detail,
        )
    return IntegrationError(
        service=SERVICE,
        category=Category.NETWORK,
        message="The weights could not be downloaded.",
        detail=detail,
    )


def _check_response(response: httpx.Response) -> None:
    status = response.status_code
    if status in (404, 410):
        raise file_refusal("The weights are no longer available from Replicate.", detail=f"HTTP {status}")
    if status == 429:
        raise IntegrationError(
            service=SERVICE,
            category=Category.RATE_LIMIT,
            message="Replicate is rate limiting the download.",
            status=status,
        )
    if status >= 500:
        raise IntegrationError(
            service=SERVICE,
            category=Category.SERVICE_ERROR,
            message="Replicate failed to serve the weights.",
            status=status,
        )
    if status != 200:
        raise file_refusal(f"Downloading the weights answered HTTP {status}.", detail=f"HTTP {status}")


# --- Images -------------------------------------------------------------------------------------------
def image_download(url: str) -> bytes:
    """GET one output image; the URL comes from a vendor's JSON, so it is checked like the weights'."""

    def check(hop_url: str) -> tuple[str, ...]:
        try:
            return output_url_check(hop_url)
        except IntegrationError as exc:
            raise file_refusal(
                "Replicate sent an image address we do not download from.", retryable=False, detail=exc.detail
            ) from None

    def on_response(response: httpx.Response) -> None:
        if response.status_code in (404, 410):
            raise file_refusal(
                "Replicate no longer has the image.", retryable=False, detail=f"{response.status_code} {url}"
            )
        if response.status_code != 200:
            raise file_refusal(
                "The image could not be downloaded from Replicate.",
                retryable=response.status_code >= 500 or response.status_code == 429,
                detail=f"{response.status_code} {url}",
            )

    def fail(kind: downloads.Failure, detail: str) -> IntegrationError:
        if kind in ("too_large", "too_large_declared"):
            return file_refusal("The image is larger than we accept.", retryable=False, detail=detail)
        return file_refusal(
            "The image could not be downloaded from Replicate.",
            retryable=kind in ("timeout", "network"),
            detail=detail,
        )

    buffer = io.BytesIO()
    # Our token goes only to Replicate's own hosts; redirects are not followed, so it goes nowhere else.
    downloads.download(
        url=url,
        check=check,
        sink=buffer,
        cap_bytes=int(settings.GENERATION_IMAGE_MAX_BYTES),
        deadline_seconds=float(settings.GENERATION_DOWNLOAD_DEADLINE_SECONDS),
        read_timeout_seconds=float(settings.REPLICATE_TIMEOUT_SECONDS),
        headers_for=replicate_client.download_headers,
        max_redirects=0,
        on_response=on_response,
        fail=fail,
    )
    return buffer.getvalue()
