"""The developer API, /api/v1/: thin endpoints over the apps' selectors and services.

Every endpoint needs a bearer token (api.auth) with the scope it names; every object is read through
its owner-scoped selector, so another owner's id is 404, as on the dashboard. Every error is a
problem document (api.problems). POSTs accept an Idempotency-Key (api.services.idempotent).
"""

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pydantic
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI, Query
from ninja.errors import AuthenticationError, HttpError, ValidationError

from api import schemas
from api.auth import TokenAuth, need
from api.problems import COMMON, Problem, ProblemOut, form_problem
from api.services import idempotent
from billing.pricing import credits_to_dollars, generation_cost_credits, upscale_cost_credits
from billing.selectors import balance_for_user, ledger_for_user
from billing.services import InsufficientCredits
from fluxsite.accounts.forms import WebhookEndpointForm
from fluxsite.accounts.models import WebhookEndpoint
from fluxsite.accounts.services import webhooks
from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.pagination import cursor_page
from fluxsite.ratelimits import limit_reached
from generations import selectors as generation_selectors
from generations import services as generation_services
from generations.forms import GenerateForm, UpscaleForm
from models_app.selectors import get_model_for_user, models_for_user
from training import selectors as training_selectors
from training import services as training_services
from training.forms import TrainingCreateForm, TrainingParamsForm, params_initial
from training.models import TrainingJob

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="Fluxsite API",
    version="1",
    description="Train FLUX LoRA models, generate images with them and read your credits, over HTTP.",
    auth=TokenAuth(),
    urls_namespace="api",
    docs_url=None,  # our own reference page (api.views.reference): the CSP allows no CDN
    openapi_url="/openapi.json",
)

# Every POST takes an Idempotency-Key (api.services.idempotent); the document says so.
IDEMPOTENT = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "Any unique string (a UUID) per operation: a retry with the same key and body "
            "within a day gets the first answer, and nothing is spent twice.",
        }
    ]
}
PER_PAGE_DEFAULT = 20
PER_PAGE_MAX = 100


# --- Errors: one shape for everything ------------------------------------------------------------
@api.exception_handler(Problem)
def _problem(request: HttpRequest, exc: Problem) -> HttpResponse:
    return exc.response()


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = Problem(
        "unauthorized",
        detail="Send a valid, unrevoked API token: Authorization: Bearer fx_…",
        hint="Create one on your account page (Account → API tokens).",
    ).response()
    response["WWW-Authenticate"] = 'Bearer realm="fluxsite"'
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    pairs = []
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "payload")]
        pairs.append((".".join(loc), str(error.get("msg", "invalid"))))
    return Problem(
        "invalid-request",
        detail=pairs[0][1] if len(pairs) == 1 else f"{len(pairs)} fields are not valid.",
        errors=pairs,
        hint="The reference page (/api/v1/docs) lists each field's type and range.",
    ).response()


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return Problem("not-found", detail="No such object among yours.").response()


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    slug = {405: "method-not-allowed", 404: "not-found", 401: "unauthorized"}.get(
        exc.status_code, "invalid-request"
    )
    return Problem(slug, detail=str(exc), status=exc.status_code).response()


@api.exception_handler(Exception)
def _server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("api: unhandled error on %s %s", request.method, request.path)
    return Problem("server-error", detail="The error was logged; retrying may help.").response()


def _json(data: Any, status: int = 200) -> HttpResponse:
    """A schema instance as the response (the POSTs answer this way so the answer can be stored)."""
    return HttpResponse(data.model_dump_json(), status=status, content_type="application/json")


def _rate_limit(request: HttpRequest, group: str) -> None:
    retry_after = limit_reached(request, group)
    if retry_after is not None:
        raise Problem(
            "rate-limited",
            detail=f"Too many {group.replace('_', ' ')} requests for now.",
            hint=f"Retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )


def _insufficient(exc: InsufficientCredits) -> Problem:
    return Problem(
        "insufficient-credits",
        detail=str(exc),
        hint="Buy credits on the billing page (/billing/), then retry with the same Idempotency-Key.",
    )


NOTHING_SPENT = "Nothing was spent."
T = TypeVar("T")


def _quote(
    out: type[schemas.QuoteOut] | type[schemas.TrainingQuoteOut],
    *,
    user: Any,
    credits: int,
    dollars: Any,
    errors: dict[str, list[str]],
) -> HttpResponse:
    """The `?dry_run=true` answer: the price, the balance, and the field errors a real request
    would be refused with (the same pairs as `_refused`'s problem). Nothing is written."""
    balance = balance_for_user(user)
    return _json(
        out(
            valid=not errors,
            credits=credits,
            dollars=dollars,
            balance=balance,
            enough_credits=balance >= credits,
            errors=[
                {"field": "" if name == "__all__" else name, "message": message}
                for name, messages in errors.items()
                for message in messages
            ],
        )
    )


def _refused(errors: dict[str, list[str]]) -> Problem:
    """A refused write (before anything is spent) as a 422 problem with the field errors."""
    return form_problem(errors, hint=NOTHING_SPENT)


def _spend(
    request: HttpRequest,
    group: str,
    errors: dict[str, list[str]],
    run: Callable[[], T],
    *,
    refused: tuple[type[Exception], ...] = (),
    conflict: tuple[type[Exception], ...] = (),
) -> T:
    """A paid write, after its dry run would have answered: refuse the field errors (422), count
    the rate limit, then `run()` the service. Too few credits is 402; an exception in `refused`
    is a 422 refusal and one in `conflict` a 409, each saying nothing was spent."""
    if errors:
        raise _refused(errors)
    _rate_limit(request, group)
    try:
        return run()
    except InsufficientCredits as exc:
        raise _insufficient(exc)
    except refused as exc:
        raise _refused({"__all__": [str(exc)]})
    except conflict as exc:
        raise Problem("conflict", detail=str(exc), hint=NOTHING_SPENT)


def _per_page(limit: int) -> int:
    return max(1, min(limit, PER_PAGE_MAX))


# --- Output builders: read only the columns the selectors load -----------------------------------
def _training(job: Any) -> schemas.TrainingOut:
    try:
        model_id = job.lora_model.pk  # a reverse one-to-one: one query
    except ObjectDoesNotExist:
        model_id = None
    steps = (job.params or {}).get("steps")
    return schemas.TrainingOut(
        id=job.pk,
        name=job.name,
        trigger_word=job.trigger_word,
        subject_kind=job.subject_kind,
        stage=job.status,
        stage_label=job.get_status_display(),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=schemas.ProgressOut(
            step=job.progress_step,
            total=job.progress_total,
            percent=job.progress_percent,
            eta_seconds=job.eta_seconds,
        ),
        current_loss=job.current_loss,
        loss_history=[(int(p[0]), float(p[1])) for p in job.loss_history or []],
        cost_credits=job.cost_credits,
        cost_estimate_dollars=job.cost_estimate_dollars,
        cost_actual_dollars=job.actual_cost_dollars,
        steps=int(steps) if steps is not None else None,
        runs=job.runs,
        error=(
            schemas.TrainingErrorOut(
                stage=job.failed_stage,
                category=job.error_category,
                message=job.error_message,
                hint=job.error_hint,
            )
            if job.status == job.Status.FAILED
            else None
        ),
        model_id=model_id,
    )


def _model(model: Any) -> schemas.ModelOut:
    return schemas.ModelOut(
        id=model.pk,
        name=model.name,
        slug=model.slug,
        trigger_word=model.trigger_word,
        subject_kind=model.subject_kind,
        status=model.status,
        visibility=model.visibility,
        usable=generation_selectors.model_is_usable(model),
        replicate_version=model.replicate_version,
        hf_repo_id=model.hf_repo_id,
        suggested_lora_scale=model.suggested_lora_scale,
        training_id=model.training_id,
        created_at=model.created_at,
    )


def _image(request: HttpRequest, image: Any) -> schemas.ImageOut:
    return schemas.ImageOut(
        id=image.pk,
        generation_id=image.generation_id,
        index=image.index,
        url=request.build_absolute_uri(storage.public_url(name=image.file_name)),
        thumbnail_url=request.build_absolute_uri(storage.public_url(name=image.thumbnail_name)),
        width=image.width,
        height=image.height,
        byte_size=image.byte_size,
        created_at=image.created_at,
    )


def _generation(request: HttpRequest, generation: Any, images: list) -> schemas.GenerationOut:
    return schemas.GenerationOut(
        id=generation.pk,
        model_id=generation.lora_model_id,
        status=generation.status,
        mode=generation.mode,
        source_image_id=generation.source_image_id,
        extra_model_id=generation.extra_lora_model_id,
        prompt=generation.prompt,
        effective_prompt=generation.effective_prompt,
        params=generation.params,
        num_outputs=generation.num_outputs,
        seed=generation.seed,
        cost_credits=generation.cost_credits,
        error_category=generation.error_category,
        error_message=generation.error_message,
        created_at=generation.created_at,
        finished_at=generation.finished_at,
        images=[_image(request, image) for image in images],
    )


# --- Trainings -------------------------------------------------------------------------------------
@api.get("/trainings", response={200: schemas.TrainingPageOut, **COMMON}, tags=["trainings"])
def trainings_list(
    request: HttpRequest,
    status: str = Query("all", description="all, active, succeeded, failed, canceled or draft"),
    q: str = Query("", description="Part of the name or trigger word"),
    sort: str = Query("newest", description="newest, oldest or name"),
    after: str = Query("", description="The next_cursor of the previous page"),
    limit: int = Query(PER_PAGE_DEFAULT, description=f"Rows per page, at most {PER_PAGE_MAX}"),
):
    """Your trainings, with the dashboard's filters; scope read."""
    user = need(request, "read").owner
    qs = training_selectors.trainings_search(user, status=status, query=q, sort=sort)
    page = cursor_page(
        qs,
        ordering=training_selectors.training_ordering(sort),
        cursor=after,
        per_page=_per_page(limit),
        target="rows",
    )
    items = [
        schemas.TrainingSummaryOut(
            id=job.pk,
            name=job.name,
            trigger_word=job.trigger_word,
            stage=job.status,
            created_at=job.created_at,
            progress=schemas.ProgressOut(
                step=job.progress_step,
                total=job.progress_total,
                percent=job.progress_percent,
                eta_seconds=None,
            ),
            photo_count=job.image_count,
            model_id=job.model_pk,
        )
        for job in page
    ]
    return schemas.TrainingPageOut(items=items, next_cursor=page.next_cursor)


@api.get(
    "/trainings/{training_id}",
    response={200: schemas.TrainingOut, 404: ProblemOut, **COMMON},
    tags=["trainings"],
)
def training_read(request: HttpRequest, training_id: int):
    """A training: its stage, progress, loss history and cost; scope read."""
    user = need(request, "read").owner
    return _training(training_selectors.get_training_for_user(user, training_id))


def _training_action(request: HttpRequest, training_id: int, action: str) -> HttpResponse:
    user = need(request, "train").owner
    job = training_selectors.get_training_for_user(user, training_id)
    try:
        if action == "cancel":
            job = training_services.training_cancel(job=job)
        else:
            job = training_services.training_retry(job=job)
    except InsufficientCredits as exc:
        raise _insufficient(exc)
    except training_services.PipelineError as exc:
        raise Problem(
            "conflict", detail=str(exc), hint=f"Read GET /api/v1/trainings/{training_id} for its stage."
        )
    except IntegrationError as exc:
        raise Problem("upstream-error", detail=f"Replicate did not accept the {action}: {exc.user_text}")
    job = training_selectors.get_training_for_user(user, training_id)
    return _json(_training(job))


ACTION = {
    200: schemas.TrainingOut,
    402: ProblemOut,
    404: ProblemOut,
    409: ProblemOut,
    502: ProblemOut,
    **COMMON,
}


@api.post("/trainings/{training_id}/cancel", response=ACTION, tags=["trainings"], openapi_extra=IDEMPOTENT)
@idempotent
def training_cancel(request: HttpRequest, training_id: int):
    """Cancel a running training (at Replicate too); its credits are refunded. Scope train."""
    return _training_action(request, training_id, "cancel")


@api.post("/trainings/{training_id}/retry", response=ACTION, tags=["trainings"], openapi_extra=IDEMPOTENT)
@idempotent
def training_retry(request: HttpRequest, training_id: int):
    """Run a failed training again from the stage that failed (its credits are spent again). Scope train."""
    return _training_action(request, training_id, "retry")


# --- Creating a training: the draft, its photos, the start -----------------------------------------
def _form_errors(form: Any) -> dict[str, list[str]]:
    return {name: [str(m) for m in messages] for name, messages in form.errors.items()}


@api.post(
    "/trainings",
    response={201: schemas.TrainingOut, **COMMON},
    tags=["trainings"],
    openapi_extra=IDEMPOTENT,
)
@idempotent
def training_create(request: HttpRequest, payload: schemas.TrainingIn):
    """A draft training with an empty dataset; add photos, then start it. Scope train."""
    user = need(request, "train").owner
    form = TrainingCreateForm(payload.model_dump())
    if not form.is_valid():
        raise form_problem(_form_errors(form))
    job = training_services.training_create(owner=user, **form.cleaned_data)
    response = _json(_training(training_selectors.get_training_for_user(user, job.pk)), status=201)
    response["Location"] = f"/api/v1/trainings/{job.pk}"
    return response


PHOTOS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Photos (JPEG, PNG, WebP, HEIC) or ZIPs of photos with .txt captions",
                        }
                    },
                    "required": ["files"],
                }
            }
        },
    },
    **IDEMPOTENT,
}


@api.post(
    "/trainings/{training_id}/photos",
    response={200: schemas.PhotosOut, 404: ProblemOut, 409: ProblemOut, 413: ProblemOut, **COMMON},
    tags=["trainings"],
    openapi_extra=PHOTOS_BODY,
)
@idempotent
def training_photos_add(request: HttpRequest, training_id: int):
    """Add photos (multipart, field `files`, one or many) to a draft training; one verdict per file,
    as on the dataset page. Scope train."""
    user = need(request, "train").owner
    dataset = training_selectors.get_dataset_for_user(user, training_id)
    _rate_limit(request, "upload")
    try:
        files = request.FILES.getlist("files")
    except (TooManyFilesSent, MultiPartParserError):
        raise Problem("invalid-request", detail="The upload could not be read, or has too many files.")
    limiter = getattr(request, "upload_limiter", None)
    skipped = list(limiter.skipped) if limiter is not None else []
    if not files and not skipped:
        raise Problem(
            "invalid-request",
            detail="Send the photos as multipart field “files”.",
            errors=[("files", "required")],
        )
    # Files over the per-file limit were skipped while they streamed in (training.uploads).
    verdicts = [
        training_services.FileVerdict(
            training_services.display_name_sanitise(name),
            False,
            f"Too large: over {limiter.limit if limiter else 0} bytes, the most per file (we stopped reading it there).",
        )
        for name in skipped
    ]
    try:
        verdicts += training_services.dataset_upload_files(dataset=dataset, files=files) if files else []
    except training_services.DatasetError as exc:
        raise Problem("conflict", detail=str(exc))
    return _photos_answer(dataset, verdicts)


def _photos_answer(dataset: Any, verdicts: list) -> HttpResponse:
    """One verdict per file (per photo of a ZIP), and the dataset's readiness, as on the dataset page."""
    readiness = training_selectors.dataset_readiness(dataset)
    return _json(
        schemas.PhotosOut(
            files=[
                schemas.PhotoVerdictOut(
                    name=v.name, ok=v.ok, message=v.message, image_id=v.image_id, warnings=list(v.warnings)
                )
                for v in verdicts
            ],
            photo_count=readiness.count,
            ready=readiness.ready,
            readiness=readiness.text,
        )
    )


@api.post(
    "/trainings/{training_id}/photos/from-url",
    response={200: schemas.PhotosOut, 404: ProblemOut, 409: ProblemOut, **COMMON},
    tags=["trainings"],
    openapi_extra=IDEMPOTENT,
)
@idempotent
def training_photos_from_url(request: HttpRequest, training_id: int, payload: schemas.ZipUrlIn):
    """Add the photos of a ZIP (with .txt captions beside them) fetched from a URL on one of the
    site's allowed hosts (TRAINING_ZIP_URL_HOSTS; off when none): the upload's limits and one
    verdict per photo. A URL refused, a fetch failed or over the size limit, or a file that is not
    a ZIP, adds nothing (422). Scope train."""
    user = need(request, "train").owner
    dataset = training_selectors.get_dataset_for_user(user, training_id)
    _rate_limit(request, "upload")
    if dataset.training.status != TrainingJob.Status.DRAFT:
        raise Problem("conflict", detail="This training has started: its photos can no longer be changed.")
    try:
        verdicts = training_services.dataset_upload_zip_url(dataset=dataset, url=payload.url)
    except training_services.DatasetError as exc:
        raise form_problem({"url": [str(exc)]})
    return _photos_answer(dataset, verdicts)


def _start_form(job: Any, payload: schemas.TrainingStartIn) -> TrainingParamsForm:
    """The start page's own form: its defaults, the preset's values, then what the request gives."""
    form = TrainingParamsForm()
    data: dict[str, Any] = {
        name: field.initial for name, field in form.fields.items() if field.initial is not None
    }
    data.update(
        params_initial(
            preset=payload.preset, sample_prompts=training_services.sample_prompts_default(job=job)
        )
    )
    given = payload.model_dump(exclude_none=True, exclude={"preset", "sample_prompts"})
    data.update(given)
    if payload.sample_prompts is not None:
        data["sample_prompts"] = "\n".join(payload.sample_prompts)
    data["preset"] = payload.preset if not given else ""
    if not data.get("autocaption"):
        data.pop("autocaption", None)  # an unchecked box sends nothing
    return TrainingParamsForm(data)


@api.post(
    "/trainings/{training_id}/start",
    response={
        200: schemas.TrainingOut | schemas.TrainingQuoteOut,
        402: ProblemOut,
        404: ProblemOut,
        409: ProblemOut,
        **COMMON,
    },
    tags=["trainings"],
    openapi_extra=IDEMPOTENT,
)
@idempotent
def training_start(
    request: HttpRequest,
    training_id: int,
    payload: schemas.TrainingStartIn,
    dry_run: bool = Query(False, description="Validate and price only: nothing is spent or run"),
):
    """Hold the credits and start a draft training (the start page's parameters, presets and
    checks). `?dry_run=true` answers the quote and spends nothing. Scope train."""
    user = need(request, "train").owner
    job = training_selectors.get_training_with_dataset_for_user(user, training_id)
    form = _start_form(job, payload)
    errors = {} if form.is_valid() else _form_errors(form)
    if dry_run:
        steps = int(form.cleaned_data.get("steps") or 0) if not errors or "steps" not in errors else 0
        prompts = form.cleaned_data.get("sample_prompts") if "sample_prompts" in form.cleaned_data else None
        credits, dollars = (
            training_services.training_estimate(
                steps=steps, sample_prompts=len(prompts) if prompts is not None else None
            )
            if steps
            else (0, "0.00")
        )
        readiness = training_selectors.dataset_readiness(job.dataset)
        if not readiness.ready:
            errors.setdefault("__all__", []).append(readiness.summary)
        return _quote(schemas.TrainingQuoteOut, user=user, credits=credits, dollars=dollars, errors=errors)
    _spend(
        request,
        "training_start",
        errors,
        lambda: training_services.training_start(
            job=job, params=form.params(), preset=form.cleaned_data.get("preset") or ""
        ),
        conflict=(training_services.PipelineError,),
    )
    return _json(_training(training_selectors.get_training_for_user(user, job.pk)))


# --- Models and their images -----------------------------------------------------------------------
MODEL_ORDERING = ("-created_at", "-pk")


@api.get("/models", response={200: schemas.ModelPageOut, **COMMON}, tags=["models"])
def models_list(request: HttpRequest, after: str = "", limit: int = PER_PAGE_DEFAULT):
    """Your models, newest first; scope read."""
    user = need(request, "read").owner
    page = cursor_page(
        models_for_user(user),
        ordering=MODEL_ORDERING,
        cursor=after,
        per_page=_per_page(limit),
        target="rows",
    )
    return schemas.ModelPageOut(items=[_model(m) for m in page], next_cursor=page.next_cursor)


@api.get("/models/{model_id}", response={200: schemas.ModelOut, 404: ProblemOut, **COMMON}, tags=["models"])
def model_read(request: HttpRequest, model_id: int):
    """One of your models; scope read."""
    user = need(request, "read").owner
    return _model(get_model_for_user(user, model_id))


@api.get(
    "/models/{model_id}/images",
    response={200: schemas.ImagePageOut, 404: ProblemOut, **COMMON},
    tags=["models"],
)
def model_images(request: HttpRequest, model_id: int, after: str = "", limit: int = PER_PAGE_DEFAULT):
    """The images generated with one of your models, newest first; scope read."""
    user = need(request, "read").owner
    model = get_model_for_user(user, model_id)
    page = cursor_page(
        generation_selectors.images_for_user(user, model),
        ordering=generation_selectors.IMAGE_ORDERING,
        cursor=after,
        per_page=_per_page(limit),
        target="rows",
    )
    return schemas.ImagePageOut(items=[_image(request, i) for i in page], next_cursor=page.next_cursor)


# --- Generations -----------------------------------------------------------------------------------
@api.get(
    "/generations/{generation_id}",
    response={200: schemas.GenerationOut, 404: ProblemOut, **COMMON},
    tags=["generations"],
)
def generation_read(request: HttpRequest, generation_id: int):
    """A generation and its images (once succeeded); scope read."""
    user = need(request, "read").owner
    generation = generation_selectors.get_generation_for_user(user, generation_id)
    return _generation(request, generation, list(generation.images.order_by("index")))


def _generation_payload(request: HttpRequest) -> tuple[schemas.GenerationIn, dict]:
    """The request's fields as GenerationIn, from a JSON body or a multipart form (whose files,
    `input_image` and `mask`, come back beside it). Invalid fields are the usual 422 problem."""
    files: dict = {}
    if request.content_type == "multipart/form-data":
        try:
            data: Any = {name: request.POST.get(name) for name in request.POST}
            files = {
                name: request.FILES.get(name) for name in ("input_image", "mask") if name in request.FILES
            }
        except (TooManyFilesSent, MultiPartParserError):
            raise Problem("invalid-request", detail="The upload could not be read.")
        limiter = getattr(request, "upload_limiter", None)
        if limiter is not None and limiter.skipped:  # over even the dataset's per-file limit
            raise _refused(
                {
                    "input_image": [
                        f"{training_services.display_name_sanitise(name)} is over {limiter.limit} bytes; the most "
                        f"we take is {settings.GENERATION_INPUT_MAX_BYTES} bytes."
                        for name in limiter.skipped
                    ]
                }
            )
    else:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Problem("invalid-request", detail="The body is not JSON.", errors=[("", "not JSON")])
        if not isinstance(data, dict):
            raise Problem(
                "invalid-request", detail="The body is a JSON object.", errors=[("", "not an object")]
            )
    try:
        return schemas.GenerationIn.model_validate(data), files
    except pydantic.ValidationError as exc:
        raise ValidationError([dict(error) for error in exc.errors()])


def _generate_form(model: Any, payload: schemas.GenerationIn, files: dict) -> GenerateForm:
    """The dashboard's own form, with the model's limits: the same checks and the same messages."""
    try:
        limits = generation_services.generation_limits(model=model)
    except (generation_services.GenerationError, IntegrationError):
        limits = {}
    lora_scale = payload.lora_scale
    if lora_scale is None:
        lora_scale = model.suggested_lora_scale if model.suggested_lora_scale is not None else 1.0
    data = {
        "prompt": payload.prompt,
        "aspect_ratio": payload.aspect_ratio,
        "num_outputs": payload.num_outputs,
        "lora_scale": lora_scale,
        "num_inference_steps": payload.num_inference_steps,
        "guidance_scale": payload.guidance_scale,
        "seed": "" if payload.seed is None else payload.seed,
        "output_format": payload.output_format,
    }
    optional = {
        "source_image": payload.source_image_id,
        "prompt_strength": payload.prompt_strength,
        "extra_model": payload.extra_model_id,
        "extra_lora_scale": payload.extra_lora_scale,
    }
    data.update({name: value for name, value in optional.items() if value is not None})
    return GenerateForm(data, files, limits=limits)


# The same fields in either body (the endpoint parses the body itself: JSON or multipart).
GENERATION_FIELDS = schemas.GenerationIn.model_json_schema()["properties"]
GENERATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": GENERATION_FIELDS,
                    "required": ["model_id", "prompt"],
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        **GENERATION_FIELDS,
                        "input_image": {
                            "type": "string",
                            "format": "binary",
                            "description": "An image to start from (JPEG, PNG, WebP): image to image",
                        },
                        "mask": {
                            "type": "string",
                            "format": "binary",
                            "description": "A PNG the image's size over the start image: white is "
                            "repainted, black kept (inpainting)",
                        },
                    },
                    "required": ["model_id", "prompt"],
                }
            },
        },
    },
    **IDEMPOTENT,
}


@api.post(
    "/generations",
    response={201: schemas.GenerationOut, 200: schemas.QuoteOut, 402: ProblemOut, 404: ProblemOut, **COMMON},
    tags=["generations"],
    openapi_extra=GENERATION_BODY,
)
@idempotent
def generation_create(
    request: HttpRequest,
    dry_run: bool = Query(False, description="Validate and price only: nothing is spent or run"),
):
    """Generate images with one of your models, in every mode of the generate page: text to image;
    image to image from a gallery image (`source_image_id`) or an uploaded `input_image`
    (multipart); inpainting with a `mask` (multipart) over that image; a second LoRA
    (`extra_model_id`). Scope generate. The credits are spent when the request is accepted and
    refunded if the run fails. `?dry_run=true` answers the quote (credits, dollars, the validation
    result, the images checked) and spends nothing."""
    user = need(request, "generate").owner
    payload, files = _generation_payload(request)
    model = get_model_for_user(user, payload.model_id)
    # Each id is looked up among the owner's own: another person's is 404, as on the page.
    source_image = (
        generation_selectors.get_image_for_user(user, payload.source_image_id)
        if payload.source_image_id is not None
        else None
    )
    extra_model = (
        get_model_for_user(user, payload.extra_model_id) if payload.extra_model_id is not None else None
    )
    form = _generate_form(model, payload, files)
    errors: dict[str, list[str]] = {}
    if not form.is_valid():
        errors = _form_errors(form)
    else:
        try:
            generation_services.generation_target(model=model)
            generation_services.generation_inputs_check(
                user=user,
                input_image=form.read(form.cleaned_data["input_image"]),
                source_image=source_image,
                mask=form.read(form.cleaned_data["mask"]),
            )
        except generation_services.GenerationError as exc:
            errors = {"__all__": [str(exc)]}
    if dry_run:
        credits = generation_cost_credits(num_images=payload.num_outputs)
        return _quote(
            schemas.QuoteOut, user=user, credits=credits, dollars=credits_to_dollars(credits), errors=errors
        )
    generation = _spend(
        request,
        "generate",
        errors,
        lambda: generation_services.generation_start(
            user=user,
            model=model,
            prompt=form.cleaned_data["prompt"],
            params=form.params(),
            input_image=form.read(form.cleaned_data["input_image"]),
            source_image=source_image,
            mask=form.read(form.cleaned_data["mask"]),
            extra_model=extra_model,
        ),
        refused=(generation_services.GenerationError,),
    )
    return _generation_created(request, user, generation)


def _generation_created(request: HttpRequest, user: Any, generation: Any) -> HttpResponse:
    generation = generation_selectors.get_generation_for_user(user, generation.pk)
    response = _json(_generation(request, generation, list(generation.images.order_by("index"))), status=201)
    response["Location"] = f"/api/v1/generations/{generation.pk}"
    return response


@api.post(
    "/images/{image_id}/upscale",
    response={201: schemas.GenerationOut, 200: schemas.QuoteOut, 402: ProblemOut, 404: ProblemOut, **COMMON},
    tags=["generations"],
    openapi_extra=IDEMPOTENT,
)
@idempotent
def image_upscale(
    request: HttpRequest,
    image_id: int,
    payload: schemas.UpscaleIn,
    dry_run: bool = Query(False, description="Validate and price only: nothing is spent or run"),
):
    """Upscale one of your generated images (×2 or ×4, optionally enhancing faces), as the image
    page does: a generation of mode `upscale` whose source is the image. Scope generate."""
    user = need(request, "generate").owner
    image = generation_selectors.get_image_for_user(user, image_id)
    form = UpscaleForm({"scale": payload.scale, **({"face_enhance": "on"} if payload.face_enhance else {})})
    errors = {} if form.is_valid() else _form_errors(form)
    if dry_run:
        credits = upscale_cost_credits(num_images=1)
        return _quote(
            schemas.QuoteOut, user=user, credits=credits, dollars=credits_to_dollars(credits), errors=errors
        )
    generation = _spend(
        request,
        "generate",
        errors,
        lambda: generation_services.generated_image_upscale(
            user=user,
            image=image,
            scale=form.cleaned_data["scale"],
            face_enhance=form.cleaned_data["face_enhance"],
        ),
        refused=(generation_services.GenerationError,),
    )
    return _generation_created(request, user, generation)


# --- Credits ---------------------------------------------------------------------------------------
@api.get("/balance", response={200: schemas.BalanceOut, **COMMON}, tags=["credits"])
def balance(request: HttpRequest):
    """Your balance in credits; scope read."""
    user = need(request, "read").owner
    return schemas.BalanceOut(credits=balance_for_user(user), credit_value_cents=settings.CREDIT_VALUE_CENTS)


@api.get("/ledger", response={200: schemas.LedgerPageOut, **COMMON}, tags=["credits"])
def ledger(request: HttpRequest, after: str = "", limit: int = PER_PAGE_DEFAULT):
    """Every credit movement (purchases, grants, spends, refunds), newest first; scope read."""
    user = need(request, "read").owner
    page = cursor_page(
        ledger_for_user(user),
        ordering=("-created_at", "-id"),
        cursor=after,
        per_page=_per_page(limit),
        target="rows",
    )
    items = [
        schemas.LedgerEntryOut(
            id=e.pk,
            amount=e.amount,
            kind=e.kind,
            reference=e.reference,
            balance_after=e.balance_after,
            note=e.note,
            created_at=e.created_at,
        )
        for e in page
    ]
    return schemas.LedgerPageOut(items=items, next_cursor=page.next_cursor)


# --- Outbound webhooks: the account page's endpoints, through the same services ------------------
def _endpoint(endpoint: WebhookEndpoint) -> schemas.WebhookEndpointOut:
    return schemas.WebhookEndpointOut(
        id=endpoint.pk, url=endpoint.url, events=list(endpoint.events), created_at=endpoint.created_at
    )


def _delivery(delivery: Any) -> schemas.WebhookDeliveryOut:
    return schemas.WebhookDeliveryOut(
        id=delivery.pk,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        type=delivery.type,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        payload=delivery.payload,
    )


WEBHOOK_ORDERING = ("-created_at", "-pk")


@api.get("/webhooks", response={200: schemas.WebhookEndpointPageOut, **COMMON}, tags=["webhooks"])
def webhook_endpoints_list(request: HttpRequest, after: str = "", limit: int = PER_PAGE_DEFAULT):
    """Your webhook endpoints (never their secrets), newest first; scope read."""
    user = need(request, "read").owner
    page = cursor_page(
        WebhookEndpoint.objects.filter(owner=user),
        ordering=WEBHOOK_ORDERING,
        cursor=after,
        per_page=_per_page(limit),
        target="rows",
    )
    return schemas.WebhookEndpointPageOut(items=[_endpoint(e) for e in page], next_cursor=page.next_cursor)


@api.post(
    "/webhooks",
    response={201: schemas.WebhookEndpointCreatedOut, **COMMON},
    tags=["webhooks"],
    openapi_extra=IDEMPOTENT,
)
@idempotent
def webhook_endpoint_create(request: HttpRequest, payload: schemas.WebhookEndpointIn):
    """Register an endpoint for some events; the answer holds its signing secret, shown this once.
    The destination is checked as on the account page (no private or loopback address in
    production). Scope webhooks."""
    user = need(request, "webhooks").owner
    form = WebhookEndpointForm({"url": payload.url, "events": payload.events})
    if not form.is_valid():
        raise form_problem(_form_errors(form))
    try:
        endpoint = webhooks.webhook_endpoint_create(
            user=user, url=form.cleaned_data["url"], events=form.cleaned_data["events"]
        )
    except webhooks.WebhookError as exc:
        raise form_problem({"url": [str(exc)]})  # the account page shows it on the URL too
    response = _json(
        schemas.WebhookEndpointCreatedOut(**_endpoint(endpoint).model_dump(), secret=endpoint.secret),
        status=201,
    )
    response["Location"] = f"/api/v1/webhooks/{endpoint.pk}"
    return response


@api.get(
    "/webhooks/{endpoint_id}",
    response={200: schemas.WebhookEndpointOut, 404: ProblemOut, **COMMON},
    tags=["webhooks"],
)
def webhook_endpoint_read(request: HttpRequest, endpoint_id: int):
    """One of your endpoints (not its secret); scope read."""
    user = need(request, "read").owner
    return _endpoint(webhooks.webhook_endpoint_get(user=user, pk=endpoint_id))


@api.delete("/webhooks/{endpoint_id}", response={204: None, 404: ProblemOut, **COMMON}, tags=["webhooks"])
def webhook_endpoint_delete(request: HttpRequest, endpoint_id: int):
    """Delete one of your endpoints and its delivery log (nothing more is sent to it). Scope webhooks."""
    user = need(request, "webhooks").owner
    webhooks.webhook_endpoint_delete(user=user, endpoint_id=endpoint_id)
    return 204, None


@api.post(
    "/webhooks/{endpoint_id}/test",
    response={202: schemas.WebhookDeliveryOut, 404: ProblemOut, **COMMON},
    tags=["webhooks"],
    openapi_extra=IDEMPOTENT,
)
@idempotent
def webhook_endpoint_test(request: HttpRequest, endpoint_id: int):
    """Send a `webhook.test` event to one of your endpoints (the page's "Send test event"); the
    answer is its delivery as it stands (read it again in the delivery log). Scope webhooks."""
    user = need(request, "webhooks").owner
    delivery = webhooks.webhook_test_send(user=user, endpoint_id=endpoint_id)
    delivery.refresh_from_db()  # sent once the transaction committed: show how that went
    return _json(_delivery(delivery), status=202)


@api.get(
    "/webhooks/{endpoint_id}/deliveries",
    response={200: schemas.WebhookDeliveryPageOut, 404: ProblemOut, **COMMON},
    tags=["webhooks"],
)
def webhook_deliveries_list(
    request: HttpRequest, endpoint_id: int, after: str = "", limit: int = PER_PAGE_DEFAULT
):
    """One endpoint's delivery log, newest first: each event's status, attempts and last answer;
    scope read."""
    user = need(request, "read").owner
    endpoint = webhooks.webhook_endpoint_get(user=user, pk=endpoint_id)
    page = cursor_page(
        endpoint.deliveries.all(),
        ordering=WEBHOOK_ORDERING,
        cursor=after,
        per_page=_per_page(limit),
        target="rows",
    )
    return schemas.WebhookDeliveryPageOut(items=[_delivery(d) for d in page], next_cursor=page.next_cursor)


def openapi_document() -> dict:
    """The OpenAPI document, as served at /api/v1/openapi.json (the reference page renders it)."""
    return json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/v1/")))
