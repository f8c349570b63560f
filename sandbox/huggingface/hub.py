"""The Hub stand-in's logic: tokens, the blob store on disk, repos and commits.

Views (sandbox.huggingface.views) translate HTTP to these functions and back. Errors are raised
as HubError, which a view renders in the Hub's shape: `{"error": ...}` plus the `X-Error-Code`
and `X-Error-Message` headers that huggingface_hub's `hf_raise_for_status` reads. The texts the
client keys on come from the vendor's material (sandbox/vendor/huggingface/errors.json).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction

from sandbox.huggingface import vendor
from sandbox.huggingface.models import HubCommit, HubFile, HubLfsObject, HubRepo

if TYPE_CHECKING:
    from _typeshed import SupportsRead  # anything with read(n) -> bytes: a file, or a request body

# What the real Hub answers for a bad token; huggingface_hub keys on this exact text to tell a bad
# token apart from a missing repo (both are 401 on repo URLs).
INVALID_CREDENTIALS = vendor.example("errors", "invalid_credentials")["headers"]["X-Error-Message"]
REPO_NOT_FOUND = vendor.example("errors", "repo_not_found")
READONLY_TOKEN_PREFIX = "hf_readonly"
LFS_THRESHOLD_BYTES = 10 * 1024 * 1024
# Patterns the Hub's default .gitattributes sends to LFS (a short list of the ones that matter here).
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".tar",
    ".zip",
    ".gz",
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".gguf",
    ".onnx",
    ".h5",
    ".npy",
    ".parquet",
    ".arrow",
)
GITATTRIBUTES = "".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES
).encode()
REPO_NAME_RE = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
COMMIT_OID_RE = re.compile(r"^[0-9a-f]{40}$")


class HubError(Exception):
    """An error answer. `body` replaces the usual `{"error": message, **extra}`; `message_header`
    False leaves out X-Error-Message (the recorded 409 of repo creation has none)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        extra: dict | None = None,
        headers: dict[str, str] | None = None,
        body: dict | None = None,
        message_header: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}
        self.body = body
        self.message_header = message_header


def repo_not_found(repo_id: str) -> HubError:
    # The Hub does not name the repo in this answer (errors.json, repo_not_found).
    headers = REPO_NOT_FOUND["headers"]
    return HubError(404, headers["X-Error-Message"], code=headers["X-Error-Code"])


# --- Xet ------------------------------------------------------------------------------------------
# The stand-in speaks only the Git LFS upload path, which huggingface_client uses everywhere. A
# request for a Xet token means some caller took the Xet path after all: it is refused and kept
# here, so a test can prove that no publish ever asks for one.
_xet_lock = threading.Lock()
_xet_requests: list[str] = []


def xet_request_record(path: str) -> None:
    with _xet_lock:
        _xet_requests.append(path)


def xet_requests() -> list[str]:
    with _xet_lock:
        return list(_xet_requests)


def xet_requests_clear() -> None:
    with _xet_lock:
        _xet_requests.clear()


# --- Tokens -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    name: str
    can_write: bool
    token_name: str


def caller_from_header(authorization: str) -> Caller | None:
    """None for an anonymous request; HubError(401) for a token the Hub does not know."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HubError(401, INVALID_CREDENTIALS)
    if settings.HF_TOKEN and hmac.compare_digest(token.encode(), settings.HF_TOKEN.encode()):
        return Caller(name=settings.HF_NAMESPACE, can_write=True, token_name="fluxsite-write")
    if token.startswith(READONLY_TOKEN_PREFIX):
        return Caller(name=settings.HF_NAMESPACE, can_write=False, token_name="fluxsite-read")
    raise HubError(401, INVALID_CREDENTIALS)


def require_writer(caller: Caller | None, namespace: str) -> Caller:
    if caller is None:
        raise HubError(401, INVALID_CREDENTIALS)
    if not caller.can_write:
        raise HubError(403, "You don't have the rights to perform this action: this token is read-only.")
    if namespace != caller.name:
        raise HubError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
    return caller


def can_read(caller: Caller | None, repo: HubRepo) -> bool:
    return not repo.private or (caller is not None and caller.name == repo.namespace)


# --- Blob store -----------------------------------------------------------------------------------
def _root() -> Path:
    # Read at call time so tests can point it at a temporary folder.
    return Path(settings.SANDBOX_HF_ROOT)


def blob_path(sha256: str) -> Path:
    return _root() / "blobs" / sha256[:2] / sha256


def blob_write_stream(
    *, chunks: Iterable[bytes], expected_oid: str | None = None, expected_size: int | None = None
) -> tuple[str, int]:
    """Stream `chunks` to the store; returns (sha256, size). Refuses a mismatch with what was announced."""
    tmp_dir = _root() / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        oid = digest.hexdigest()
        if expected_oid is not None and oid != expected_oid:
            raise HubError(400, f"Uploaded content does not match the announced oid {expected_oid}")
        if expected_size is not None and size != expected_size:
            raise HubError(400, f"Uploaded {size} bytes, but {expected_size} were announced")
        final = blob_path(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_name, final)
        return oid, size
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def read_chunks(stream: SupportsRead[bytes], chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


def git_blob_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def upload_mode_for(*, path: str, size: int, sample: bytes) -> str:
    """What the Hub's preupload answers: LFS for big, binary-looking or LFS-tracked files."""
    if size > LFS_THRESHOLD_BYTES or path.lower().endswith(LFS_SUFFIXES) or b"\0" in sample:
        return "lfs"
    return "regular"


# --- Repos and commits ----------------------------------------------------------------------------
def _new_commit_oid(*parts: str) -> str:
    seed = "\n".join((*parts, str(time.time_ns()), os.urandom(8).hex()))
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def repo_get(namespace: str, name: str) -> HubRepo | None:
    return HubRepo.objects.filter(namespace=namespace, name=name).first()


def repo_get_readable(namespace: str, name: str, caller: Caller | None) -> HubRepo:
    repo = repo_get(namespace, name)
    # A private repo is indistinguishable from a missing one to those who may not see it.
    if repo is None or not can_read(caller, repo):
        raise repo_not_found(f"{namespace}/{name}")
    return repo


def commit_for_revision(repo: HubRepo, revision: str) -> HubCommit:
    oid = repo.head_oid if revision == "main" else revision
    commit = repo.commits.filter(oid=oid).first() if COMMIT_OID_RE.match(oid) else None
    if commit is None:
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
    return commit


@transaction.atomic
def repo_create(*, namespace: str, name: str, private: bool) -> tuple[HubRepo, bool]:
    """Create a repo with the Hub's initial commit (.gitattributes); returns (repo, created)."""
    existing = repo_get(namespace, name)
    if existing is not None:
        return existing, False
    oid, size = blob_write_stream(chunks=[GITATTRIBUTES])
    repo = HubRepo.objects.create(namespace=namespace, name=name, private=private, head_oid="")
    commit = HubCommit.objects.create(
        repo=repo, oid=_new_commit_oid(repo.repo_id, "initial"), summary="initial commit"
    )
    HubFile.objects.create(
        commit=commit,
        path=".gitattributes",
        size=size,
        sha256=oid,
        git_oid=git_blob_oid(GITATTRIBUTES),
        lfs=False,
    )
    repo.head_oid = commit.oid
    repo.save(update_fields=["head_oid", "updated_at"])
    return repo, True


@dataclass
class _Change:
    kind: str  # "file", "lfsFile", "deletedFile", "deletedFolder"
    path: str
    sha256: str = ""
    size: int = 0
    git_oid: str = ""


def commit_apply(*, repo: HubRepo, revision: str, header: dict, changes: list[_Change]) -> HubCommit:
    """Write one commit on `main` of `repo` from already-stored blobs."""
    if revision != "main":
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
    with transaction.atomic():
        repo = HubRepo.objects.select_for_update().get(pk=repo.pk)
        parent = header.get("parentCommit")
        if parent and parent != repo.head_oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        head = repo.commits.get(oid=repo.head_oid)
        tree = {f.path: f for f in head.files.all()}
        for change in changes:
            if change.kind == "deletedFile":
                if tree.pop(change.path, None) is None:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {change.path}", code="EntryNotFound"
                    )
            elif change.kind == "deletedFolder":
                prefix = change.path.rstrip("/") + "/"
                for path in [p for p in tree if p.startswith(prefix)]:
                    del tree[path]
            else:
                tree[change.path] = HubFile(
                    path=change.path,
                    size=change.size,
                    sha256=change.sha256,
                    git_oid=change.git_oid,
                    lfs=change.kind == "lfsFile",
                )
        commit = HubCommit.objects.create(
            repo=repo,
            oid=_new_commit_oid(repo.repo_id, repo.head_oid, header.get("summary", "")),
            parent_oid=repo.head_oid,
            summary=str(header.get("summary", ""))[:500],
            description=str(header.get("description", "")),
        )
        HubFile.objects.bulk_create(
            [
                HubFile(
                    commit=commit, path=f.path, size=f.size, sha256=f.sha256, git_oid=f.git_oid, lfs=f.lfs
                )
                for f in tree.values()
            ]
        )
        repo.head_oid = commit.oid
        repo.save(update_fields=["head_oid", "updated_at"])
    return commit


def change_from_line(item: dict) -> _Change | None:
    """One NDJSON line of a commit payload -> a change with its blob stored; None for the header."""
    import base64
    import binascii

    key, value = item.get("key"), item.get("value") or {}
    path = value.get("path", "")
    if key == "header":
        return None
    if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
        raise HubError(400, f"Invalid path in commit: {path!r}")
    if key == "file":
        if value.get("encoding", "base64") != "base64":
            raise HubError(400, "Only base64 file content is supported")
        try:
            content = base64.b64decode(value.get("content", ""), validate=True)
        except (binascii.Error, ValueError):
            raise HubError(400, f"Invalid base64 content for {path}")
        oid, size = blob_write_stream(chunks=[content])
        return _Change(kind="file", path=path, sha256=oid, size=size, git_oid=git_blob_oid(content))
    if key == "lfsFile":
        oid = str(value.get("oid", ""))
        obj = HubLfsObject.objects.filter(oid=oid, verified=True).first()
        if obj is None or not blob_path(oid).exists():
            raise HubError(
                400,
                f"Your push was rejected because an LFS pointer pointed to a file that does not "
                f"exist. For instance: {path}",
            )
        if value.get("size") is not None and int(value["size"]) != obj.size:
            raise HubError(400, f"LFS pointer size mismatch for {path}")
        return _Change(
            kind="lfsFile",
            path=path,
            sha256=oid,
            size=obj.size,
            git_oid=git_blob_oid(lfs_pointer(oid, obj.size)),
        )
    if key in ("deletedFile", "deletedFolder"):
        return _Change(kind=key, path=path)
    raise HubError(400, f"Unknown commit operation: {key!r}")


def lfs_object_store(*, oid: str, size: int, stream: SupportsRead[bytes]) -> None:
    blob_write_stream(chunks=read_chunks(stream), expected_oid=oid, expected_size=size)
    HubLfsObject.objects.update_or_create(oid=oid, defaults={"size": size, "verified": False})


def lfs_object_verify(*, oid: str, size: int) -> bool:
    if not blob_path(oid).exists():
        return False
    return HubLfsObject.objects.filter(oid=oid, size=size).update(verified=True) == 1


def lfs_object_present(oid: str, size: int) -> bool:
    return HubLfsObject.objects.filter(oid=oid, size=size, verified=True).exists() and blob_path(oid).exists()
