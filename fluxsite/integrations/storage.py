"""Object storage: local files or S3/Cloudflare R2 through django-storages.

Two storages are configured in settings.STORAGES: "default" (public things: generated images,
thumbnails) and "private" (datasets, weights). Private files are only ever reached through
expiring, unguessable URLs: S3/R2 presigned URLs (SigV4), or locally a signed token served by
`serve_signed` at /files/<token>.

S3 docs: https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html
R2 docs: https://developers.cloudflare.com/r2/api/s3/presigned-urls/
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterator
from typing import IO

from django.conf import settings
from django.core import signing
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.http import FileResponse, Http404

from fluxsite.integrations.errors import Category, IntegrationError

PUBLIC = "default"
PRIVATE = "private"
_SALT = "fluxsite.storage.signed-file"


def get_storage(alias: str = PRIVATE) -> Storage:
    return storages[alias]


def is_local(alias: str = PRIVATE) -> bool:
    return isinstance(get_storage(alias), FileSystemStorage)


def _wrap(exc: Exception, what: str) -> IntegrationError:
    return IntegrationError(
        service="storage",
        category=Category.FILE_ERROR,
        message=f"The file could not be {what}.",
        detail=repr(exc),
        retryable=True,
    )


def file_save(*, alias: str, name: str, content: IO[bytes]) -> str:
    """Store `content` under `name` (or a free variant of it); returns the stored name."""
    from django.core.files import File

    try:
        return get_storage(alias).save(name, File(content, name=name))
    except Exception as exc:
        raise _wrap(exc, "stored")


def file_open_for_writing(*, alias: str, name: str) -> IO[bytes]:
    """A writable file in storage: S3/R2 streams it as a multipart upload, locally it is a file.

    The caller must close it. Nothing is held in memory beyond the multipart buffer.
    """
    storage = get_storage(alias)
    try:
        if isinstance(storage, FileSystemStorage):
            path = storage.path(name)
            import os

            os.makedirs(os.path.dirname(path), exist_ok=True)
            return open(path, "wb")  # noqa: SIM115  (returned to the caller, who closes it)
        return storage.open(name, "wb")
    except Exception as exc:
        raise _wrap(exc, "opened for writing")


def file_iter(*, alias: str, name: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    try:
        with get_storage(alias).open(name, "rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk
    except FileNotFoundError as exc:
        raise _wrap(exc, "found")


def file_sha256(*, alias: str, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in file_iter(alias=alias, name=name):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def file_delete(*, alias: str, name: str) -> None:
    try:
        get_storage(alias).delete(name)
    except Exception as exc:
        raise _wrap(exc, "deleted")


def signed_url(*, alias: str, name: str, expires: int | None = None, absolute: bool = True) -> str:
    """An expiring, unguessable URL for a stored file.

    S3/R2: a SigV4 presigned URL. Local files: /files/<signed token>, served by serve_signed,
    absolute on SITE_URL so that an outside service (Replicate) can fetch it.
    """
    expires = expires or settings.SIGNED_URL_SECONDS
    storage = get_storage(alias)
    if isinstance(storage, FileSystemStorage):
        token = signing.dumps({"a": alias, "n": name, "e": expires}, salt=_SALT, compress=True)
        path = f"/files/{token}"
        return f"{settings.SITE_URL}{path}" if absolute else path
    try:
        # The stubs know only Storage.url(name); django-storages' S3 backend takes `expire` too.
        return storage.url(name, expire=expires)  # type: ignore[call-arg]
    except TypeError:  # a backend whose url() has no expire argument (custom domain)
        return storage.url(name)


def public_url(*, name: str) -> str:
    """URL of a file in the public storage (generated images); signed when the bucket is private."""
    return get_storage(PUBLIC).url(name)


def serve_signed(token: str) -> FileResponse:
    """Serve a local private file if the token is genuine and not expired; 404 otherwise."""
    try:
        # max_age is checked against the expiry baked into the token.
        payload = signing.loads(token, salt=_SALT, max_age=None)
        signing.loads(token, salt=_SALT, max_age=int(payload["e"]))
    except (signing.BadSignature, KeyError, ValueError, TypeError):
        raise Http404("This link is invalid or has expired.")
    alias, name = payload["a"], payload["n"]
    if alias not in settings.STORAGES or not is_local(alias):
        raise Http404("This link is invalid or has expired.")
    storage = get_storage(alias)
    if not storage.exists(name):
        raise Http404("This file no longer exists.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(storage.open(name, "rb"), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name.rsplit("/", 1)[-1]}"'
    response["Cache-Control"] = "private, no-store"
    return response
