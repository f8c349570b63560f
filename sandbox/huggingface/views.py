"""The Hugging Face Hub stand-in, over HTTP: what huggingface_hub 2.4's HfApi sends with Xet off.

Paths and requests follow the client's source (hf_api.py, _commit_api.py, lfs.py,
file_download.py). The answers are built from the vendor's own material in
sandbox/vendor/huggingface/ (recorded Hub answers, git-lfs's spec, huggingface.js's tests) through
sandbox.huggingface.vendor, which refuses a field that material does not show. Each endpoint first
consumes an armed fault (sandbox.faults) for its operation name, then answers as the Hub does.
Xet token requests are refused and recorded (hub.xet_requests): the stand-in speaks only LFS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from functools import wraps

import yaml
from django.core import signing
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import reverse
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from sandbox.faults import HTTP_FAULT_KINDS, fault_delay, fault_take
from sandbox.huggingface import hub, vendor
from sandbox.huggingface.hub import HubError
from sandbox.huggingface.models import HubRepo
from sandbox.models import FaultKind

logger = logging.getLogger(__name__)
_LFS_SALT = "sandbox.huggingface.lfs-upload"
_LFS_URL_SECONDS = 3600
LFS_CONTENT_TYPE = vendor.material("lfs_batch")["content_type"]

# Texts for armed faults. 401 and 404 are the Hub's (errors.json); the others are the stand-in's
# own, as no vendor material records them (errors.json, not_covered).
_FAULT_MESSAGES = {
    401: hub.INVALID_CREDENTIALS,
    403: "You don't have the rights to perform this action.",
    404: hub.REPO_NOT_FOUND["headers"]["X-Error-Message"],
    409: "Conflict: the resource already exists.",
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "Bad Gateway",
    503: "Service Unavailable: the Hub is temporarily down.",
    504: "Gateway Timeout",
}


# Every error body the stand-in sends must fit one of these (the shape _format reads: "error").
_ERROR_BODIES = [
    *vendor.bodies("errors", "repo_not_found", "rate_limited", "rate_limited_repo_creation"),
    *vendor.bodies("repos", "create_409"),
]


def _error(exc: HubError) -> JsonResponse:
    body = exc.body if exc.body is not None else {"error": exc.message, **exc.extra}
    vendor.conform(body, _ERROR_BODIES, f"error {exc.status}")
    response = JsonResponse(body, status=exc.status)
    if exc.message_header:
        response["X-Error-Message"] = exc.message
    if exc.code:
        response["X-Error-Code"] = exc.code
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _repo_exists_error(url: str) -> HubError:
    """The recorded 409 of POST /api/repos/create (repos.json, create_409), for a model repo."""
    recorded = vendor.example("repos", "create_409")
    message = recorded["body"]["error"].replace("space repo", "model repo")
    return HubError(
        409,
        message,
        body=vendor.body("repos", "create_409", error=message, url=url),
        message_header="X-Error-Message" in recorded["headers"],
    )


def _rate_limited(retry_after: int | None) -> HubError:
    """A 429 as the Hub sends it: the RateLimit headers of hub-docs' rate-limits.md, in the form of
    huggingface_hub's own test (errors.json, rate_limited), with the window's reset put to
    `retry_after` seconds. huggingface_hub waits that long before it retries."""
    recorded = vendor.example("errors", "rate_limited")
    seconds = retry_after if retry_after is not None else 1
    headers = {
        "RateLimit": re.sub(r";t=\d+", f";t={seconds}", recorded["headers"]["ratelimit"]),
        "RateLimit-Policy": recorded["headers"]["ratelimit-policy"],
    }
    return HubError(
        429,
        "Too Many Requests",
        body=vendor.body("errors", "rate_limited"),
        headers=headers,
        message_header=False,
    )


def _fault_error(
    status: int, retry_after: int | None, operation: str, base: str, request: HttpRequest | None = None
) -> HubError:
    if status == 429:
        return _rate_limited(retry_after)
    headers = {}
    if status == 503:
        # No vendor material shows what the Hub sends with a 503; Retry-After is plain HTTP, and
        # huggingface_hub's backoff reads it (errors.json, not_covered).
        headers["Retry-After"] = str(retry_after if retry_after is not None else 1)
    code = hub.REPO_NOT_FOUND["headers"]["X-Error-Code"] if status == 404 else None
    if status == 409 and operation == "repos.create":
        # huggingface_hub reads "url" from a 409 when exist_ok is set.
        try:
            body = _json_body(request) if request is not None else {}
        except HubError:
            body = {}
        repo_id = "/".join(p for p in (body.get("organization"), body.get("name")) if p)
        return _repo_exists_error(f"{base}/{repo_id}")
    return HubError(status, _FAULT_MESSAGES.get(status, "Sandbox fault"), code=code, headers=headers)


def hub_endpoint(operation: str) -> Callable:
    """Consume a fault for `operation`, then run the view, rendering HubError in the Hub's shape."""

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @csrf_exempt  # an API called by the SDK, not by a browser form
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
            fault = fault_take(service="huggingface", operation=operation, kinds=HTTP_FAULT_KINDS)
            if fault is not None:
                if fault.kind == FaultKind.STATUS:
                    return _error(
                        _fault_error(
                            fault.status or 500, fault.retry_after, operation, _base(request), request
                        )
                    )
                fault_delay(fault)
                if fault.kind == FaultKind.TIMEOUT:
                    return _error(HubError(504, _FAULT_MESSAGES[504]))
            try:
                return view(request, *args, **kwargs)
            except HubError as exc:
                return _error(exc)

        return wrapper

    return decorate


def _base(request: HttpRequest) -> str:
    """The endpoint the client was given (…/sandbox/hf), as seen from its own request."""
    return request.build_absolute_uri(reverse("sandbox:sandbox_hf:root")).rstrip("/")


def _caller(request: HttpRequest) -> hub.Caller | None:
    return hub.caller_from_header(request.headers.get("Authorization", ""))


def _json_body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise HubError(400, "Invalid JSON body")
    if not isinstance(data, dict):
        raise HubError(400, "Expected a JSON object")
    return data


def _repo_for_write(request: HttpRequest, namespace: str, name: str) -> HubRepo:
    caller = _caller(request)
    repo = hub.repo_get(namespace, name)
    if repo is None or not hub.can_read(caller, repo):
        raise hub.repo_not_found(f"{namespace}/{name}")
    hub.require_writer(caller, namespace)
    return repo


# --- Account ---------------------------------------------------------------------------------------
@hub_endpoint("whoami")
@require_http_methods(["GET"])
def whoami(request: HttpRequest) -> HttpResponse:
    caller = _caller(request)
    if caller is None:
        raise HubError(401, hub.INVALID_CREDENTIALS)
    # huggingface.js's recorded answer (whoami.json), with the sandbox account in place of its CI bot;
    # the flags (emailVerified, isPro, canPay, billingMode, ...) stay as recorded.
    recorded = vendor.example("whoami", "user")["body"]
    return JsonResponse(
        vendor.body(
            "whoami",
            "user",
            id=hashlib.sha1(caller.name.encode(), usedforsecurity=False).hexdigest()[:24],
            name=caller.name,
            fullname="Fluxsite (sandbox)",
            email=f"{caller.name}@fluxsite.local",
            avatarUrl=f"/avatars/{hashlib.md5(caller.name.encode(), usedforsecurity=False).hexdigest()}.svg",
            auth={
                **recorded["auth"],
                "accessToken": {
                    **recorded["auth"]["accessToken"],
                    "displayName": caller.token_name,
                    "role": "write" if caller.can_write else "read",
                    "createdAt": "2025-01-01T00:00:00.000Z",
                },
            },
        )
    )


@require_http_methods(["GET"])
def root(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sandbox": "huggingface", "endpoint": _base(request)})


# --- Repos ----------------------------------------------------------------------------------------
def _repo_names(data: dict, caller: hub.Caller | None) -> tuple[str, str]:
    name = data.get("name")
    namespace = data.get("organization") or (caller.name if caller else None)
    if not isinstance(name, str) or not hub.REPO_NAME_RE.match(name):
        raise HubError(
            400,
            "Repo name must use alphanumeric chars or '-', '_', '.', '--' and '..' are forbidden, "
            "'-' and '.' cannot start or end the name, max length is 96.",
        )
    if data.get("type") not in (None, "model"):
        raise HubError(400, "The sandbox only hosts model repos.")
    return str(namespace), name


@hub_endpoint("repos.create")
@require_http_methods(["POST"])
def repos_create(request: HttpRequest) -> HttpResponse:
    data = _json_body(request)
    caller = _caller(request)
    namespace, name = _repo_names(data, caller)
    hub.require_writer(caller, namespace)
    private = (
        data.get("visibility") == "private" if "visibility" in data else bool(data.get("private", False))
    )
    repo, created = hub.repo_create(namespace=namespace, name=name, private=private)
    url = f"{_base(request)}/{repo.repo_id}"
    if not created:
        raise _repo_exists_error(url)
    return JsonResponse(vendor.body("repos", "create_200", url=url, name=repo.repo_id, id=f"{repo.pk:024x}"))


@hub_endpoint("repos.delete")
@require_http_methods(["DELETE"])
def repos_delete(request: HttpRequest) -> HttpResponse:
    data = _json_body(request)
    caller = _caller(request)
    namespace, name = _repo_names(data, caller)
    repo = _repo_for_write(request, namespace, name)
    repo.delete()
    recorded = vendor.example("repos", "delete_200")  # the plain text "OK"
    return HttpResponse(
        recorded["body"], status=recorded["status"], content_type=recorded["headers"]["Content-Type"]
    )


@hub_endpoint("repos.settings")
@require_http_methods(["PUT"])
def repo_settings(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    repo = _repo_for_write(request, namespace, name)
    data = _json_body(request)
    if "visibility" in data:
        if data["visibility"] not in ("public", "private"):
            raise HubError(400, "visibility must be 'public' or 'private' for a model repo")
        repo.private = data["visibility"] == "private"
    elif "private" in data:  # what older clients send
        repo.private = bool(data["private"])
    elif "gated" not in data:
        raise HubError(400, "At least one setting must be updated.")
    repo.save(update_fields=["private", "updated_at"])
    return JsonResponse(
        {"private": repo.private, "visibility": "private" if repo.private else "public", "gated": False}
    )


@hub_endpoint("repo.info")
@require_http_methods(["GET"])
def repo_info(request: HttpRequest, namespace: str, name: str, revision: str = "main") -> HttpResponse:
    repo = hub.repo_get_readable(namespace, name, _caller(request))
    commit = hub.commit_for_revision(repo, revision)
    with_blobs = request.GET.get("blobs", "").lower() in ("1", "true")
    siblings = []
    for f in commit.files.all():
        sibling: dict = {"rfilename": f.path}
        if with_blobs:
            sibling.update(size=f.size, blobId=f.git_oid)
            if f.lfs:
                sibling["lfs"] = {
                    "size": f.size,
                    "sha256": f.sha256,
                    "pointerSize": len(hub.lfs_pointer(f.sha256, f.size)),
                }
        siblings.append(sibling)
    answer = {
        "_id": f"{repo.pk:024x}",
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.namespace,
        "sha": commit.oid,
        "lastModified": commit.created_at.isoformat().replace("+00:00", "Z"),
        "createdAt": repo.created_at.isoformat().replace("+00:00", "Z"),
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }
    # Only fields the recorded model-info answer has; blob fields as huggingface_hub parses them.
    vendor.conform(
        answer,
        [
            *vendor.bodies("model_info", "model"),
            {"siblings": vendor.bodies("model_info", "sibling_with_blobs")},
        ],
        "model info",
    )
    return JsonResponse(answer)


@csrf_exempt
@require_http_methods(["POST"])
def validate_yaml(request: HttpRequest) -> HttpResponse:
    # No fault operation of its own: the real endpoint is only a pre-check before a commit.
    try:
        data = _json_body(request)
    except HubError as exc:
        return _error(exc)
    content = str(data.get("content", ""))
    if content.startswith("---"):
        front, sep, _ = content[3:].partition("\n---")
        try:
            if sep:
                yaml.safe_load(front)
        except yaml.YAMLError as exc:
            return JsonResponse({"errors": [{"message": f"Invalid YAML: {exc}"}], "warnings": []}, status=400)
    return JsonResponse({"errors": [], "warnings": []})


# --- Uploads ---------------------------------------------------------------------------------------
@hub_endpoint("preupload")
@require_http_methods(["POST"])
def preupload(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    repo = _repo_for_write(request, namespace, name)
    commit = hub.commit_for_revision(repo, revision)
    current = {f.path: f for f in commit.files.all()}
    import base64

    answers = []
    for item in _json_body(request).get("files", []):
        path, size = str(item.get("path", "")), int(item.get("size", 0))
        sample = base64.b64decode(item.get("sample", "") or "")
        mode = hub.upload_mode_for(path=path, size=size, sample=sample)
        answer = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        existing = current.get(path)
        if existing is not None:
            # The client compares this oid with its own (sha256 for LFS, git sha1 otherwise) to skip
            # no-ops. A new file gets no "oid" key at all, as recorded (preupload.json).
            answer["oid"] = existing.sha256 if existing.lfs else existing.git_oid
        answers.append(answer)
    return JsonResponse(vendor.body("preupload", "existing_file", files=answers, commitOid=commit.oid))


@hub_endpoint("lfs.batch")
@require_http_methods(["POST"])
def lfs_batch(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    repo = _repo_for_write(request, namespace, name)
    data = _json_body(request)
    if data.get("operation") != "upload":
        raise HubError(400, "The sandbox only supports the upload operation")
    base = _base(request)
    objects = []
    for obj in data.get("objects", []):
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if len(oid) != 64 or not isinstance(size, int):
            objects.append(
                {
                    "oid": oid,
                    "size": size if isinstance(size, int) else 0,
                    "error": {"code": 422, "message": "Invalid oid or size"},
                }
            )
            continue
        if hub.lfs_object_present(oid, size):
            objects.append({"oid": oid, "size": size})  # no actions: already stored
            continue
        token = signing.dumps({"oid": oid, "size": size}, salt=_LFS_SALT)
        objects.append(
            {
                "oid": oid,
                "size": size,
                "authenticated": True,
                "actions": {
                    # Like a presigned storage URL: the client PUTs to it without its Hub token.
                    "upload": {"href": f"{base}/lfs-upload/{token}", "expires_in": _LFS_URL_SECONDS},
                    "verify": {"href": f"{base}/{repo.repo_id}.git/info/lfs/objects/verify"},
                },
            }
        )
    answer = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
    # git-lfs's own examples (lfs_batch.json): upload and verify actions, and a per-object error.
    vendor.conform(answer, vendor.bodies("lfs_batch", "upload_with_verify", "object_error"), "lfs batch")
    return JsonResponse(answer, content_type=LFS_CONTENT_TYPE)


@hub_endpoint("lfs.upload")
@require_http_methods(["PUT"])
def lfs_upload(request: HttpRequest, token: str) -> HttpResponse:
    try:
        signed = signing.loads(token, salt=_LFS_SALT, max_age=_LFS_URL_SECONDS)
    except signing.BadSignature:
        raise HubError(403, "Request has expired or the signature does not match")
    # Read the raw stream, not request.body: a LoRA is far above DATA_UPLOAD_MAX_MEMORY_SIZE.
    hub.lfs_object_store(oid=signed["oid"], size=signed["size"], stream=request)
    return HttpResponse(status=200, headers={"ETag": f'"{signed["oid"]}"'})


@hub_endpoint("lfs.verify")
@require_http_methods(["POST"])
def lfs_verify(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    _repo_for_write(request, namespace, name)
    data = _json_body(request)
    if not hub.lfs_object_verify(oid=str(data.get("oid", "")), size=int(data.get("size", -1))):
        raise HubError(404, "Object not found or size mismatch")
    return JsonResponse({"success": True}, content_type=LFS_CONTENT_TYPE)


@hub_endpoint("commit")
@require_http_methods(["POST"])
def commit(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    repo = _repo_for_write(request, namespace, name)
    if request.GET.get("create_pr"):
        raise HubError(400, "The sandbox does not support pull requests")
    header: dict = {}
    changes = []
    # Line by line from the stream: regular files arrive base64-encoded inside this body.
    for raw in request:
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            raise HubError(400, "Invalid NDJSON line in commit payload")
        if item.get("key") == "header":
            header = item.get("value") or {}
            continue
        change = hub.change_from_line(item)
        if change is not None:
            changes.append(change)
    if not header.get("summary"):
        raise HubError(400, "Missing commit header with a summary")
    new = hub.commit_apply(repo=repo, revision=revision, header=header, changes=changes)
    # As recorded (commit.json): success and hookOutput stay the Hub's own.
    return JsonResponse(
        vendor.body(
            "commit",
            "commit_200",
            commitOid=new.oid,
            commitUrl=f"{_base(request)}/{repo.repo_id}/commit/{new.oid}",
        )
    )


# --- Downloads -------------------------------------------------------------------------------------
@hub_endpoint("resolve")
@require_http_methods(["GET", "HEAD"])
def resolve(request: HttpRequest, namespace: str, name: str, revision: str, path: str) -> HttpResponseBase:
    repo = hub.repo_get_readable(namespace, name, _caller(request))
    commit = hub.commit_for_revision(repo, revision)
    f = commit.files.filter(path=path).first()
    if f is None:
        raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
    blob = hub.blob_path(f.sha256)
    etag = f.sha256 if f.lfs else f.git_oid
    headers = {
        # hf_hub_download needs the commit, an etag and the size from the HEAD answer.
        "X-Repo-Commit": commit.oid,
        "ETag": f'"{etag}"',
        "Accept-Ranges": "bytes",
        "Last-Modified": http_date(commit.created_at.timestamp()),
    }
    if f.lfs:
        headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
    if request.method == "HEAD":
        response = HttpResponse(status=200, content_type="application/octet-stream", headers=headers)
        response["Content-Length"] = str(f.size)
        return response
    file_response = FileResponse(blob.open("rb"), content_type="application/octet-stream", headers=headers)
    file_response.block_size = 1024 * 1024
    return file_response


# --- Xet -------------------------------------------------------------------------------------------
@csrf_exempt
@require_http_methods(["GET", "POST"])
def xet_token(request: HttpRequest, namespace: str, name: str, kind: str, revision: str) -> HttpResponse:
    """GET /api/models/{repo}/xet-{read,write}-token/{rev}: the first call of the Xet path.

    The real Hub answers with a CAS endpoint and token. The stand-in does not speak Xet, by
    design: huggingface_client turns Xet off everywhere (the Hub accepts Git LFS uploads for
    Xet-backed repos). So the request is recorded for tests and refused. No vendor material
    covers such a refusal: the 501 and its text are the stand-in's own.
    """
    hub.xet_request_record(request.path)
    logger.warning("Xet %s token requested for %s/%s: a caller took the Xet path", kind, namespace, name)
    return _error(HubError(501, "The Fluxsite sandbox speaks only the Git LFS upload path, not Xet."))
