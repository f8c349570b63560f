"""Hugging Face Hub: the only module that imports `huggingface_hub`.

Every function builds its client with `build_api()` when it is called, so the same code talks to
the real Hub or to the sandbox (tests move HF_ENDPOINT to a live server), and raises only
IntegrationError(service="huggingface"). `build_api()` is also where uploads are pinned to the
Git LFS path, in production and in tests alike (see `_lfs_only`).

Hub API docs: https://huggingface.co/docs/hub/api and
https://huggingface.co/docs/huggingface_hub/package_reference/hf_api
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData, constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils import parse_ratelimit_headers
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


def _lfs_only() -> None:
    """Upload (and download) through the Git LFS path, never through Xet, against any endpoint.

    Why one path everywhere: the sandbox speaks only LFS, and the path production runs must be the
    path the tests run. Why LFS is safe against the real Hub:
    - `HF_HUB_DISABLE_XET` is huggingface_hub's documented switch ("Set to disable using `hf-xet`,
      even if it is available in your Python environment": docs/source/en/package_reference/
      environment_variables.md in github.com/huggingface/huggingface_hub).
    - The Hub accepts LFS uploads for Xet-backed repos: "Uploads from legacy / non-Xet-aware clients
      still follow the standard Git LFS path, even if the repo is already Xet-backed", and older
      clients download through "a Git LFS bridge" (https://huggingface.co/docs/hub/xet/legacy-git-lfs,
      docs/hub/xet/legacy-git-lfs.md in github.com/huggingface/hub-docs).
    - huggingface_hub 2.4 itself keeps that path for the real Hub: `_commit_api._upload_files`
      ("Uploads the files through the Xet protocol if possible, otherwise through the legacy LFS
      protocol") falls back to the LFS batch endpoint for file objects, which Xet cannot take.

    How: the environment variable is read once, when huggingface_hub.constants is first imported,
    which is often before any code of ours could set it (under pytest, django.setup() imports this
    module before tests/conftest.py runs). Every Xet decision in 2.4 reads the module constant at
    call time instead: `utils._runtime.is_xet_available()` (used by _commit_api, hf_api,
    file_download, hf_file_system) and `utils._shared_blobs` both test
    `constants.HF_HUB_DISABLE_XET`, and no module copies it at import. So setting the constant
    here, before every call, is enough; nothing sets it back.
    """
    constants.HF_HUB_DISABLE_XET = True


@sensitive_variables("token")
def build_api(*, token: str | None = None) -> HfApi:
    """The configured HfApi that every function here uses (settings checked, LFS only, timeouts).

    Application code calls the functions below; tests that drive the SDK itself against the
    sandbox build it here, so they run exactly what production runs.
    Raises ImproperlyConfigured naming every missing setting.
    """
    return _api(token)[0]


@sensitive_variables("token")
def _api(token: str | None) -> tuple[HfApi, str]:
    _lfs_only()
    endpoint = (settings.HF_ENDPOINT or "").rstrip("/")
    token = token or settings.HF_TOKEN
    missing = [name for name, value in (("HF_ENDPOINT", endpoint), ("HF_TOKEN", token)) if not value]
    if missing:
        raise ImproperlyConfigured(f"Hugging Face needs {' and '.join(missing)} (see .env.example).")
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
    # The Hub announces a 429's wait in the RateLimit header ("api";r=0;t=55), per
    # https://huggingface.co/docs/hub/rate-limits; huggingface_hub's own parser reads it, and its
    # backoff trusts it only when nothing remains in the window. Retry-After is the HTTP fallback.
    info = parse_ratelimit_headers(response.headers)
    if response.status_code == 429 and info is not None and info.remaining == 0:
        return float(info.reset_in_seconds)
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@sensitive_variables("token")
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
        return IntegrationError(
            service=SERVICE,
            category=category,
            message=message,
            detail=detail,
            status=status,
            retry_after=_retry_after(exc.response) if status in (429, 503) else None,
        )
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return IntegrationError(
            service=SERVICE,
            category=Category.TIMEOUT,
            message="Hugging Face did not answer in time.",
            detail=detail,
        )
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return IntegrationError(
            service=SERVICE,
            category=Category.NETWORK,
            message="Hugging Face could not be reached.",
            detail=detail,
        )
    if isinstance(exc, OSError | ValueError) and "upload" in what:
        # Local file problems, or the LFS upload wrapper (RuntimeError is handled below).
        return IntegrationError(
            service=SERVICE,
            category=Category.FILE_ERROR,
            message="A file could not be uploaded to Hugging Face.",
            detail=detail,
        )
    return IntegrationError(
        service=SERVICE,
        category=Category.SERVICE_ERROR,
        message="Hugging Face gave an unexpected answer.",
        detail=detail,
    )


def _unwrap_upload_error(exc: BaseException) -> BaseException:
    # LFS uploads run in a helper that re-raises RuntimeError("Error while uploading ...") from the cause.
    while isinstance(exc, RuntimeError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


# --- Operations -----------------------------------------------------------------------------------
@sensitive_variables("token", "used")
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


@sensitive_variables("token", "used")
def repo_ensure(*, repo_id: str, private: bool = True, token: str | None = None) -> str:
    """Create the model repo unless it exists (POST /api/repos/create); returns its URL.

    An existing repo keeps its visibility: the Hub ignores `private` then.
    """
    api, used = _api(token)
    try:
        return str(api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"))
    except Exception as exc:
        raise _wrap(exc, used, f"create repo {repo_id}")


def model_card_text(
    *,
    body: str,
    base_model: str,
    tags: list[str],
    license: str,
    license_name: str | None = None,
    license_link: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A model repo's README.md: the metadata as the Hub's YAML front matter, then `body` (Markdown).

    huggingface_hub's ModelCardData names and dumps the metadata (the Hub's own keys, YAML quoting
    that no user text can break), and ModelCard parses the result again the way the Hub splits it,
    so a card that would not round-trip raises ValueError here instead of reaching the Hub.
    `extra` holds keys ModelCardData does not model (`instance_prompt`, `widget`).
    Doc: https://huggingface.co/docs/hub/model-cards#model-card-metadata
    """
    data = ModelCardData(
        base_model=base_model,
        tags=tags,
        license=license,
        license_name=license_name,
        license_link=license_link,
        **(extra or {}),
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    if card.data.to_dict() != data.to_dict():
        raise ValueError("the model card's metadata does not read back as written")
    return str(card)


@sensitive_variables("token", "used")
def repo_upload(
    *, repo_id: str, files: list[tuple[str, Path | bytes]], commit_message: str, token: str | None = None
) -> HfCommit:
    """Upload `files` ((path in repo, local path or bytes)) as one commit on main.

    Large and binary files go through the LFS batch API first (preupload decides), then one
    POST /api/models/{repo_id}/commit/main carries them all.
    """
    api, used = _api(token)
    try:
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content in files
        ]
    except ValueError as exc:
        raise IntegrationError(
            service=SERVICE,
            category=Category.FILE_ERROR,
            message="A file to upload could not be read.",
            detail=str(exc),
        )
    try:
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")
    except Exception as exc:
        raise _wrap(_unwrap_upload_error(exc), used, f"upload to {repo_id}")
    return HfCommit(oid=info.oid, url=info.commit_url)


@sensitive_variables("token", "used")
def repo_set_private(*, repo_id: str, private: bool, token: str | None = None) -> None:
    """Change the repo's visibility (PUT /api/models/{repo_id}/settings {"visibility": ...})."""
    api, used = _api(token)
    try:
        api.update_repo_settings(repo_id, private=private, repo_type="model")
    except Exception as exc:
        raise _wrap(exc, used, f"settings of {repo_id}")


@sensitive_variables("token", "used")
def repo_delete(*, repo_id: str, token: str | None = None, missing_ok: bool = True) -> None:
    """Delete the repo (DELETE /api/repos/delete); a missing repo is fine when `missing_ok`."""
    api, used = _api(token)
    try:
        api.delete_repo(repo_id, repo_type="model", missing_ok=missing_ok)
    except Exception as exc:
        raise _wrap(exc, used, f"delete {repo_id}")


@sensitive_variables("token", "used")
def repo_info(*, repo_id: str, token: str | None = None) -> HfRepo:
    """The repo's visibility, head commit and file list (GET /api/models/{repo_id})."""
    api, used = _api(token)
    try:
        info = api.model_info(repo_id, timeout=float(settings.HF_TIMEOUT_SECONDS))
    except Exception as exc:
        raise _wrap(exc, used, f"info of {repo_id}")
    return HfRepo(
        id=info.id,
        private=bool(info.private),
        sha=info.sha or "",
        files=tuple(s.rfilename for s in info.siblings or ()),
    )


@sensitive_variables("token", "used")
def file_download(
    *, repo_id: str, filename: str, revision: str | None = None, token: str | None = None, local_dir: Path
) -> Path:
    """Download one file of the repo into `local_dir` (HEAD then GET /{repo_id}/resolve/{rev}/{file})."""
    api, used = _api(token)
    try:
        path = api.hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            local_dir=local_dir,
            etag_timeout=float(settings.HF_TIMEOUT_SECONDS),
        )
    except Exception as exc:
        raise _wrap(exc, used, f"download {filename} from {repo_id}")
    return Path(path)
