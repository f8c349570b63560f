"""Fetching a training's weights from Replicate and keeping our own copy.

Replicate removes a run's outputs about an hour after it ends (docs/vendors.md), so the tar is
downloaded at once, checked and stored in the "private" storage before anything else happens.
The URL comes from a vendor's JSON, so it is treated as untrusted: https to the configured
delivery hosts only, no redirect to a private address, the connection made to the addresses that
were checked, an overall deadline, a size cap on the wire and in the tar
(fluxsite.integrations.downloads).
Our Replicate token goes along only to Replicate's own hosts, decided again at every redirect
(replicate_client.download_headers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from fluxsite.integrations import downloads, replicate_client, storage
from fluxsite.integrations.errors import Category, IntegrationError

logger = logging.getLogger(__name__)
SERVICE = "replicate"
LORA_NAME = "lora.safetensors"
CONFIG_NAME = "config.yaml"
MAX_REDIRECTS = 3
CHUNK = 1024 * 1024
# Bytes per element of each safetensors dtype (https://github.com/huggingface/safetensors#format).
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


def _refuse(message: str, *, category: Category = Category.FILE_ERROR, detail: str = "") -> IntegrationError:
    return IntegrationError(
        service=SERVICE, category=category, message=message, detail=detail or message, retryable=False
    )


# --- Where we may download from ----------------------------------------------------------------------
def _sandbox_hosts() -> set[str]:
    hosts = {urlparse(settings.SITE_URL).hostname, urlparse(settings.REPLICATE_BASE_URL).hostname}
    return {h.lower() for h in hosts if h}


def _host_allowed(host: str, allowed: set[str]) -> bool:
    """`host` is listed, or under a listed "*.domain" (outputs come from any subdomain of
    replicate.delivery: https://replicate.com/docs/topics/predictions/output-files)."""
    return host in allowed or any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


def weights_url_check(url: str) -> tuple[str, ...]:
    """Raise IntegrationError(validation) unless `url` may be downloaded from; returns the
    addresses its host resolved to, which are the only ones the download may connect to.

    Production: https, host in REPLICATE_DOWNLOAD_HOSTS, and every address it resolves to is a
    public one (so neither the URL nor a redirect can reach our own network). Sandbox mode also
    allows the sandbox's own host, over http, since it is the local server.
    """
    parsed = urlparse(url)
    try:
        host, port = (parsed.hostname or "").lower(), parsed.port
    except ValueError:  # a port that is not a number
        host, port = "", None
    if not host or parsed.username or parsed.password:
        raise _refuse("The weights URL is not a valid download address.", category=Category.VALIDATION)
    sandbox = settings.SANDBOX_MODE and host in _sandbox_hosts() and parsed.scheme in ("http", "https")
    if not sandbox:
        if parsed.scheme != "https":
            raise _refuse("The weights URL must use https.", category=Category.VALIDATION, detail=url)
        allowed = {h.lower() for h in settings.REPLICATE_DOWNLOAD_HOSTS}
        if not _host_allowed(host, allowed):
            raise _refuse(
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
        raise _refuse(
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
                check=weights_url_check,
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
        return _refuse(
            f"The weights are larger than the {filesizeformat(cap)} limit; not downloaded.", detail=detail
        )
    if kind == "too_large":
        return _refuse(
            f"The weights are larger than the {filesizeformat(cap)} limit; download stopped.", detail=detail
        )
    if kind == "too_many_redirects":
        return _refuse(
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
        raise _refuse("The weights are no longer available from Replicate.", detail=f"HTTP {status}")
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
        raise _refuse(f"Downloading the weights answered HTTP {status}.", detail=f"HTTP {status}")


# --- Extraction ----------------------------------------------------------------------------------------
def _safe_member_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name:
        raise _refuse(f"The weights archive holds an unsafe path ({name!r}); refusing it.")
    return path


def _find_members(tar: tarfile.TarFile) -> tuple[tarfile.TarInfo, tarfile.TarInfo | None]:
    lora = config = None
    for member in tar.getmembers():
        path = _safe_member_name(member.name)
        if member.isdir():
            continue
        if not member.isfile():
            # Symlinks, hard links, devices and FIFOs have no place in a weights archive.
            raise _refuse(f"The weights archive holds a link or special file ({member.name!r}); refusing it.")
        if path.name == LORA_NAME:
            if lora is not None:
                raise _refuse("The weights archive holds more than one lora.safetensors.")
            lora = member
        elif path.name == CONFIG_NAME and (
            config is None or len(path.parts) < len(PurePosixPath(config.name).parts)
        ):
            config = member
    if lora is None:
        raise _refuse("The weights archive holds no lora.safetensors file.")
    return lora, config


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, cap: int) -> None:
    if member.size > cap:
        raise _refuse(f"{PurePosixPath(member.name).name} is larger than the {filesizeformat(cap)} limit.")
    source = tar.extractfile(member)
    if source is None:
        raise _refuse(f"{member.name!r} could not be read from the weights archive.")
    written = 0
    with source, open(dest, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > cap:
                raise _refuse(
                    f"{PurePosixPath(member.name).name} is larger than the {filesizeformat(cap)} limit."
                )
            out.write(chunk)


def weights_extract_lora(*, tar_path: Path, dest_dir: Path) -> Path:
    """Extract the archive's lora.safetensors (and config.yaml, when present) into `dest_dir`.

    Returns the path of the checked lora.safetensors; config.yaml, if any, lands next to it.
    Nothing is extracted by the member's own name: we only copy the two files we want, after
    refusing any archive with an absolute or `..` path, a link or a special file. Raises
    IntegrationError(file_error, not retryable) with a message fit for the user.
    """
    cap = int(settings.REPLICATE_WEIGHTS_MAX_BYTES)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            lora_member, config_member = _find_members(tar)
            lora_path = dest_dir / LORA_NAME
            _copy_member(tar, lora_member, lora_path, cap)
            if config_member is not None:
                _copy_member(tar, config_member, dest_dir / CONFIG_NAME, min(cap, 1024 * 1024))
    except tarfile.TarError as exc:
        raise _refuse("The weights file is not a readable tar archive.", detail=repr(exc))
    safetensors_check(path=lora_path)
    return lora_path


# --- The safetensors format ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SafetensorsSummary:
    tensors: int
    header_bytes: int


def safetensors_check(*, path: Path) -> SafetensorsSummary:
    """Check that `path` is a well-formed safetensors file, reading only its header.

    Format: 8 bytes little-endian header length N, N bytes of JSON {name: {dtype, shape,
    data_offsets: [begin, end]}} (plus an optional "__metadata__"), then the tensor data, whose
    offsets must tile the rest of the file exactly.
    """
    size = path.stat().st_size
    bad = "lora.safetensors is not a valid safetensors file"
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _refuse(f"{bad} (too short).")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len < 2 or header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise _refuse(f"{bad} (its header length does not fit the file).")
        try:
            header = json.loads(handle.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _refuse(f"{bad} (its header is not JSON).")
    if not isinstance(header, dict):
        raise _refuse(f"{bad} (its header is not a JSON object).")
    data_size = size - 8 - header_len
    spans: list[tuple[int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            element = DTYPE_SIZES[dtype]
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(shape)
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
                raise ValueError((begin, end))
        except (KeyError, TypeError, ValueError):
            raise _refuse(f"{bad} (tensor {str(name)[:80]!r} is malformed).")
        if end - begin != math.prod(shape) * element:
            raise _refuse(f"{bad} (tensor {str(name)[:80]!r} has the wrong size for its shape).")
        spans.append((begin, end))
    if not spans:
        raise _refuse(f"{bad} (it holds no tensors).")
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise _refuse(f"{bad} (its tensors overlap or leave gaps).")
        position = end
    if position != data_size:
        raise _refuse(f"{bad} (its tensors do not match the file size).")
    return SafetensorsSummary(tensors=len(spans), header_bytes=header_len)


# --- Our own copy ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredWeights:
    weights_name: str
    size: int
    sha256: str
    config_name: str


def _store(local: Path, name: str) -> tuple[str, int, str]:
    digest = hashlib.sha256()
    size = 0
    target = storage.file_open_for_writing(alias=storage.PRIVATE, name=name)
    try:
        with target, open(local, "rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                target.write(chunk)
    except OSError as exc:
        raise IntegrationError(
            service="storage",
            category=Category.FILE_ERROR,
            message="The weights could not be stored.",
            detail=repr(exc),
            retryable=True,
        )
    return name, size, digest.hexdigest()


def weights_store(*, lora_path: Path, prefix: str) -> StoredWeights:
    """Copy the checked lora.safetensors (and config.yaml beside it, if any) into private storage."""
    weights_name, size, sha = _store(lora_path, f"{prefix}/{LORA_NAME}")
    config_name = ""
    config_path = lora_path.with_name(CONFIG_NAME)
    if config_path.exists():
        config_name, _, _ = _store(config_path, f"{prefix}/{CONFIG_NAME}")
    return StoredWeights(weights_name=weights_name, size=size, sha256=sha, config_name=config_name)
