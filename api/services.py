"""Writes of the API app: safe retries of POSTs (Idempotency-Key) and their pruning.

The record is inserted, and committed, before the endpoint runs: a concurrent duplicate then meets
the unique (token, key) constraint (on PostgreSQL it waits for the first insert's commit) and gets
409 while the first runs, the stored answer after. Answers are stored whatever their status except
429 and 5xx (nothing was done for sure; a retry with the key may go through).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import TooManyFilesSent
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone

from api.auth import token_of
from api.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyRecord
from api.problems import Problem
from training.uploads import FileSizeLimitHandler, declared_length_over

KEEP = timedelta(days=1)
HEADER = "Idempotency-Key"


def upload_prepare(request: HttpRequest) -> None:
    """Before a multipart body is read: refuse one declared over the dataset's limit, and skip any
    file over the per-file limit while it streams in (training.uploads, as the dashboard does)."""
    if request.content_type != "multipart/form-data":
        return
    too_long = declared_length_over(request)
    if too_long is not None:
        raise Problem(
            "invalid-request",
            status=413,
            detail=f"This upload is {too_long} bytes; one upload may carry at most "
            f"{settings.DATASET_MAX_TOTAL_BYTES} bytes.",
            hint="Send the photos in smaller batches.",
        )
    limiter = FileSizeLimitHandler(request)
    request.upload_handlers = [limiter, *request.upload_handlers]
    request.upload_limiter = limiter  # type: ignore[attr-defined]  # its `skipped` files get verdicts


def request_fingerprint(request: HttpRequest) -> str:
    """SHA-256 of the method, the path and the body. A multipart body is taken by its parts (fields,
    then each file's name, size and content), not its bytes: clients pick a new boundary per try."""
    digest = hashlib.sha256()
    for part in (request.method or "", request.get_full_path()):
        digest.update(part.encode())
        digest.update(b"\n")
    if request.content_type != "multipart/form-data":
        digest.update(request.body)
        return digest.hexdigest()
    try:
        fields = sorted(request.POST.lists())
        files = sorted(request.FILES.lists())
    except TooManyFilesSent:
        raise Problem(
            "invalid-request",
            detail=f"Too many files in one upload: send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} at a time.",
        )
    except MultiPartParserError:
        raise Problem("invalid-request", detail="The upload could not be read: try again.")
    for name, values in fields:
        digest.update(f"field:{name}={values!r}\n".encode())
    for name, uploads in files:
        for upload in uploads:
            digest.update(f"file:{name}:{upload.name}:{upload.size}\n".encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    return digest.hexdigest()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(record.response_body, status=record.status_code, content_type=record.content_type)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_claim(*, request: HttpRequest, key: str) -> IdempotencyRecord | HttpResponse:
    """The new record this request holds, or the answer it gets instead (the stored one, 409, 422)."""
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise Problem(
            "invalid-request",
            detail=f"An {HEADER} is 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters.",
            errors=[(HEADER, "not a valid key")],
            hint="Send a UUID v4 per operation, and the same one when you retry it.",
        )
    token = token_of(request)
    fingerprint = request_fingerprint(request)
    IdempotencyRecord.objects.filter(token=token, key=key, created_at__lt=timezone.now() - KEEP).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                token=token,
                key=key,
                fingerprint=fingerprint,
                method=request.method or "",
                path=request.path[:500],
            )
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(token=token, key=key).first()
    if record is None:  # pruned between the insert and this read: treat as a conflict, retry later
        raise Problem("idempotency-key-in-use", headers={"Retry-After": "1"})
    if record.fingerprint != fingerprint:
        raise Problem(
            "idempotency-key-reused",
            detail=f"This {HEADER} was first sent with another method, path or body.",
            errors=[(HEADER, "already used for another request")],
            hint="Use a new key for a new operation; resend exactly the same request to retry.",
        )
    if record.status_code is None:
        raise Problem(
            "idempotency-key-in-use",
            detail="The first request with this key is still running.",
            hint="Retry in a second: you will get its answer.",
            headers={"Retry-After": "1"},
        )
    return _replay(record)


def idempotency_complete(*, record: IdempotencyRecord, response: HttpResponse) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        record.delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code,
        content_type=response.get("Content-Type", "application/json"),
        response_body=response.content.decode(),
        completed_at=timezone.now(),
    )


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Make a POST endpoint safe to retry with an Idempotency-Key. The endpoint returns an
    HttpResponse (so its exact answer can be stored) or raises Problem."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        upload_prepare(request)
        key = request.headers.get(HEADER)
        if key is None:
            return _answer(view, request, *args, **kwargs)
        claimed = idempotency_claim(request=request, key=key)
        if isinstance(claimed, HttpResponse):
            return claimed
        try:
            response = _answer(view, request, *args, **kwargs)
        except BaseException:
            claimed.delete()
            raise
        idempotency_complete(record=claimed, response=response)
        return response

    return wrapper


def _answer(view: Callable[..., Any], request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    try:
        return view(request, *args, **kwargs)
    except Problem as problem:
        return problem.response()


def idempotency_prune(*, now=None) -> int:
    """Delete the records older than a day; returns how many."""
    cutoff = (now or timezone.now()) - KEEP
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
