"""Hugging Face Hub: the only module that imports `huggingface_hub`.

Every function builds `HfApi(endpoint=settings.HF_ENDPOINT, token=...)` when it is called, so the
same code talks to the real Hub or to the sandbox (tests move HF_ENDPOINT to a live server), and
raises only IntegrationError(service="huggingface").

Hub API docs: https://huggingface.co/docs/hub/api and
https://huggingface.co/docs/huggingface_hub/package_reference/hf_api
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx2
import huggingface_hub
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from huggingface_hub import CommitOperationAdd, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils._http import default_client_factory

from fluxsite.integrations.errors import Category, IntegrationError, category_for_status, redact

logger = logging.getLogger(__name__)
SERVICE = "huggingface"


@dataclass(frozen=True)
class HfIdentity:
    name: str
    can_write: bool


@dataclass(frozen=True)
class HfCommit:
    oid: str
    url: str


@dataclass(frozen=True)
class HfRepo:
    id: str
    private: bool
    sha: str
    files: tuple[str, ...]


# --- Building the client --------------------------------------------------------------------------
_timeout_lock = threading.Lock()
_session_timeout: float | None = None


def _use_timeout(seconds: float) -> None:
    """Give huggingface_hub's shared HTTP client an explicit timeout.

    huggingface_hub 2.4 sends every API call through one shared httpx2.Client created with
    timeout=None (only downloads take a timeout argument), so a hung Hub would hang a worker for
    ever. Installing a client factory is the library's own hook for this; it is swapped only when
    the configured number changes.
    """
    global _session_timeout
    with _timeout_lock:
        if _session_timeout == seconds:
            return

        def factory() -> httpx2.Client:
            client = default_client_factory()
            client.timeout = httpx2.Timeout(seconds)
            return client

        huggingface_hub.set_client_factory(factory)
        _session_timeout = seconds
    # Downloads read these module constants at call time.
    constants.HF_HUB_ETAG_TIMEOUT = int(seconds)
    constants.HF_HUB_DOWNLOAD_TIMEOUT = int(seconds)


def _is_sandbox(endpoint: str) -> bool:
    return bool(settings.SANDBOX_MODE) or urlparse(endpoint).path.rstrip("/").endswith("/sandbox/hf")


def _api(token: str | None) -> tuple[HfApi, str]:
    endpoint = (settings.HF_ENDPOINT or "").rstrip("/")
    token = token or settings.HF_TOKEN
    missing = [name for name, value in (("HF_ENDPOINT", endpoint), ("HF_TOKEN", token)) if not value]
    if missing:
        raise ImproperlyConfigured(f"Hugging Face needs {' and '.join(missing)} (see .env.example).")
    if _is_sandbox(endpoint):
        # With hf_xet installed, huggingface_hub uploads through Xet storage with no fallback, and
        # the sandbox speaks only the classic LFS protocol. The HF_HUB_DISABLE_XET environment
        # variable is read once at import, but `is_xet_available()` reads this constant on every
        # upload, so setting it here works whatever the environment said. Never set back to
        # False: against the real Hub Xet stays the library's own choice.
        constants.HF_HUB_DISABLE_XET = True
    _use_timeout(float(settings.HF_TIMEOUT_SECONDS))
    return HfApi(endpoint=endpoint, token=token), token


# --- Errors ---------------------------------------------------------------------------------------
def _status_message(status: int, server: str) -> tuple[Category, str]:
    if status == 401:
        return Category.AUTHENTICATION, f"Hugging Face refused the token: {server}"
    if status == 403:
        return Category.AUTHENTICATION, f"The Hugging Face token lacks write permission: {server}"
    if status == 404:
        return Category.VALIDATION, "Hugging Face has no such repository or file (or it is private)."
    if status == 409:
        return Category.VALIDATION, "Hugging Face reports a conflict: the repository already exists."
    if status == 429:
        return Category.RATE_LIMIT, "Hugging Face is rate limiting us."
    category = category_for_status(status)
    return category, f"Hugging Face answered HTTP {status}."


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _wrap(exc: BaseException, token: str, what: str) -> IntegrationError:
    """Turn whatever huggingface_hub or its transport raised into IntegrationError."""
    # hf_hub_download hides the HEAD failure behind LocalEntryNotFoundError: look underneath.
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__
    detail = redact(f"{what}: {type(exc).__name__}: {exc}", token)
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        server = redact(exc.server_message or str(exc), token).strip() or f"HTTP {status}"
        category, message = _status_message(status, server.splitlines()[0][:200])
        return IntegrationError(service=SERVICE, category=category, message=message, detail=detail, status=status,
                                retry_after=_retry_after(exc.response) if status in (429, 503) else None)
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return IntegrationError(service=SERVICE, category=Category.TIMEOUT,
                                message="Hugging Face did not answer in time.", detail=detail)
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return IntegrationError(service=SERVICE, category=Category.NETWORK,
                                message="Hugging Face could not be reached.", detail=detail)
    if isinstance(exc, OSError | ValueError) and "upload" in what:
        # Local file problems, or the LFS upload wrapper (RuntimeError is handled below).
        return IntegrationError(service=SERVICE, category=Category.FILE_ERROR,
                                message="A file could not be uploaded to Hugging Face.", detail=detail)
    return IntegrationError(service=SERVICE, category=Category.SERVICE_ERROR,
                            message="Hugging Face gave an unexpected answer.", detail=detail)


def _unwrap_upload_error(exc: BaseException) -> BaseException:
    # LFS uploads run in a helper that re-raises RuntimeError("Error while uploading ...") from the cause.
    while isinstance(exc, RuntimeError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


# --- Operations -----------------------------------------------------------------------------------
def whoami(*, token: str | None = None) -> HfIdentity:
    """Who the token belongs to and whether it may write (GET /api/whoami-v2)."""
    api, used = _api(token)
    try:
        data = api.whoami(token=used)
    except Exception as exc:
        raise _wrap(exc, used, "whoami")
    access = (data.get("auth") or {}).get("accessToken") or {}
    role = access.get("role")
    # Fine-grained tokens carry scoped permissions instead of a role; treat them as writers and
    # let the Hub refuse a write it does not allow (403 -> authentication).
    return HfIdentity(name=str(data.get("name", "")), can_write=role in ("write", "admin", "fineGrained"))


def repo_ensure(*, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Create the model repo unless it exists (POST /api/repos/create); returns its URL.

    An existing repo keeps its visibility: the Hub ignores `private` then.
    """
    api, used = _api(token)
    try:
        return str(api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"))
    except Exception as exc:
        raise _wrap(exc, used, f"create repo {repo_id}")


def repo_upload(*, repo_id: str, files: list[tuple[str, Path | bytes]], commit_message: str,
                token: str | None = None) -> HfCommit:
    """Upload `files` ((path in repo, local path or bytes)) as one commit on main.

    Large and binary files go through the LFS batch API first (preupload decides), then one
    POST /api/models/{repo_id}/commit/main carries them all.
    """
    api, used = _api(token)
    try:
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content in files]
    except ValueError as exc:
        raise IntegrationError(service=SERVICE, category=Category.FILE_ERROR,
                               message="A file to upload could not be read.", detail=str(exc))
    try:
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")
    except Exception as exc:
        raise _wrap(_unwrap_upload_error(exc), used, f"upload to {repo_id}")
    return HfCommit(oid=info.oid, url=info.commit_url)


def repo_set_private(*, repo_id: str, private: bool, token: str | None = None) -> None:
    """Change the repo's visibility (PUT /api/models/{repo_id}/settings {"visibility": ...})."""
    api, used = _api(token)
    try:
        api.update_repo_settings(repo_id, private=private, repo_type="model")
    except Exception as exc:
        raise _wrap(exc, used, f"settings of {repo_id}")


def repo_delete(*, repo_id: str, token: str | None = None, missing_ok: bool = True) -> None:
    """Delete the repo (DELETE /api/repos/delete); a missing repo is fine when `missing_ok`."""
    api, used = _api(token)
    try:
        api.delete_repo(repo_id, repo_type="model", missing_ok=missing_ok)
    except Exception as exc:
        raise _wrap(exc, used, f"delete {repo_id}")


def repo_info(*, repo_id: str, token: str | None = None) -> HfRepo:
    """The repo's visibility, head commit and file list (GET /api/models/{repo_id})."""
    api, used = _api(token)
    try:
        info = api.model_info(repo_id, timeout=float(settings.HF_TIMEOUT_SECONDS))
    except Exception as exc:
        raise _wrap(exc, used, f"info of {repo_id}")
    return HfRepo(id=info.id, private=bool(info.private), sha=info.sha or "",
                  files=tuple(s.rfilename for s in info.siblings or ()))


def file_download(*, repo_id: str, filename: str, revision: str | None = None, token: str | None = None,
                  local_dir: Path) -> Path:
    """Download one file of the repo into `local_dir` (HEAD then GET /{repo_id}/resolve/{rev}/{file})."""
    api, used = _api(token)
    try:
        path = api.hf_hub_download(repo_id, filename, revision=revision, local_dir=local_dir,
                                   etag_timeout=float(settings.HF_TIMEOUT_SECONDS))
    except Exception as exc:
        raise _wrap(exc, used, f"download {filename} from {repo_id}")
    return Path(path)
