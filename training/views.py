from __future__ import annotations

from operator import attrgetter
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import TooManyFilesSent, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from billing.selectors import balance_for_user
from billing.services import InsufficientCredits
from fluxsite.fragments import csrf_scope, fragment_key
from fluxsite.htmx import CREDITS_CHANGED, polled
from fluxsite.http import AuthenticatedHtmxHttpRequest, AuthenticatedHttpRequest, HtmxHttpRequest
from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.pagination import CURSOR_PARAM, cursor_first_page, cursor_page, render_list, wants_more
from fluxsite.ratelimits import rate_limited
from fluxsite.units import duration_text
from training import selectors, services
from training.captioning_models import INSPECTION_MODEL
from training.forms import (
    CaptionBatchForm,
    CaptionForm,
    CaptionImportForm,
    CaptionReplaceForm,
    CaptionTemplateForm,
    TrainerChoiceForm,
    TrainingCreateForm,
    TrainingFilterForm,
    TrainingParamsForm,
    params_initial,
    trainer_params_form,
)
from training.models import CaptionBatch, Dataset, TrainingJob
from training.progress import loss_chart_svg
from training.trainers.registry import DEFAULT as DEFAULT_TRAINER
from training.trainers.registry import TRAINERS, trainer_get
from training.uploads import FileSizeLimitHandler, declared_length_over

DATASET_PAGE = "training/dataset.html"
BULK_PARTIAL = "training/partials/_caption_bulk.html"
LIST_PAGE = "training/list.html"
DETAIL_PAGE = "training/detail.html"
START_PAGE = "training/start.html"


# What a history row shows (image_count and model_pk are the list query's annotations): its cache key.
_ROW_SHOWS = attrgetter(
    "pk",
    "name",
    "trigger_word",
    "status",
    "progress_step",
    "progress_total",
    "image_count",
    "model_pk",
    "created_at",
)


@login_required
@require_GET
def training_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """History: filter, search, sort, 20 at a time; one query for the rows whatever their number."""
    form = TrainingFilterForm(request.GET)
    values = form.values()
    cursor = request.GET.get(CURSOR_PARAM)
    link: dict[str, Any] = {
        "ordering": selectors.training_ordering(values["sort"]),
        "per_page": selectors.TRAININGS_PER_PAGE,
        "target": "training-rows",
        "label": "More trainings",
        "query": {"status": values["status"], "q": values["query"], "sort": values["sort"]},
    }
    if not cursor and values == form.DEFAULTS:  # most visits: a query compiled once per process
        page = cursor_first_page(selectors.trainings_first_page(request.user), **link)
    else:
        page = cursor_page(selectors.trainings_search(request.user, **values), cursor=cursor, **link)
    return render_list(
        request,
        LIST_PAGE,
        {
            "page": page,
            "trainings": page.object_list,
            # The rows' HTML is cached on what they show (fluxsite.fragments).
            "rows_key": fragment_key(map(_ROW_SHOWS, page.object_list)),
            "filter_form": form,
            "filters": values,
            # The filter controls (tabs and widgets) are cached on the values they show: the clean
            # ones (the tabs' links) and what the widgets echo back, which may be invalid input.
            "filters_key": fragment_key([(*values.values(), form["q"].value(), form["sort"].value())]),
            # base_fields is typed dict[str, Field]; "status" is the form's ChoiceField.
            "status_choices": cast(forms.ChoiceField, TrainingFilterForm.base_fields["status"]).choices,
        },
    )


@login_required
@require_GET
def training_row_status(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The status cell of one list row, polled while the training runs."""
    job = selectors.get_training_for_user(request.user, pk)
    context = {"t": job, "detail_url": reverse("training:detail", args=[job.pk])}  # as the row has it
    return polled(render(request, f"{LIST_PAGE}#row_status", context), finished=not job.is_active)


@login_required
@require_http_methods(["GET", "POST"])
def training_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TrainingCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        job = services.training_create(owner=request.user, **form.cleaned_data)
        return redirect("training:dataset", pk=job.pk)
    return render(request, "training/new.html", {"form": form})


# What a photo's card in the dataset grid shows: the key of the grid's cached HTML.
_GRID_SHOWS = attrgetter(
    "pk",
    "original_name",
    "original_width",
    "original_height",
    "byte_size",
    "warnings",
    "inspection_warnings",
    "caption_source",
    "caption_model",
    "caption",
)


def _dataset_context(request: HttpRequest, dataset: Dataset, **extra) -> dict:
    since = timezone.now().timestamp()  # before the photos are read: captions arriving later are polled
    images = list(dataset.images.all())
    t = dataset.training_id
    editable = dataset.training.status == dataset.training.Status.DRAFT
    # A trained model: each photo can start an image with it (image to image, inpainting).
    model_pk = selectors.training_ready_model_pk(dataset.training)
    return {
        "training": dataset.training,
        "dataset": dataset,
        "images": images,
        # A callable, called inside the grid's cached block: the 50 caption editors are built
        # only when that HTML is not cached yet (they were most of a full dataset page's time).
        "image_rows": lambda: [
            (
                image,
                CaptionForm.for_image(image, save_url=reverse("training:image_caption", args=[t, image.pk])),
            )
            for image in images
        ],
        # The cards hold {% csrf_token %}: the key is this browser's (fluxsite.fragments.csrf_scope).
        "grid_key": fragment_key([(t, editable, model_pk, csrf_scope(request)), *map(_GRID_SHOWS, images)]),
        "readiness": selectors.dataset_readiness(dataset, images),
        **_captioning_context(dataset, since=since),
        "template_form": CaptionTemplateForm(initial={"template": dataset.caption_template}),
        "bulk": _bulk_context(),
        "editable": editable,
        "model_pk": model_pk,
        "limits": {
            "min": settings.DATASET_MIN_IMAGES,
            "max": settings.DATASET_MAX_IMAGES,
            "file_bytes": settings.DATASET_MAX_FILE_BYTES,
        },
        # What static/js/photo-resize.js needs to resize photos before upload without changing a
        # verdict or the stored size: the target, and the server's own size and refusal limits.
        "resize": {
            "long_side": settings.DATASET_BROWSER_RESIZE_LONG_SIDE,
            "server_long_side": settings.DATASET_LONG_SIDE,
            "min_side": settings.DATASET_MIN_SIDE,
            "max_aspect": settings.DATASET_MAX_ASPECT,
            "max_pixels": settings.DATASET_MAX_PIXELS,
        },
        **extra,
    }


def _render_grid_or_page(
    request: HtmxHttpRequest, dataset: Dataset, status: int = 200, **extra
) -> HttpResponse:
    template = f"{DATASET_PAGE}#grid" if request.htmx else DATASET_PAGE
    return render(request, template, _dataset_context(request, dataset, **extra), status=status)


@login_required
@require_GET
def dataset_detail(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    return _render_grid_or_page(request, dataset)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@csrf_exempt  # checked inside, once the body is parsed: see below
@login_required
@require_POST
@rate_limited("upload")
def dataset_upload(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """Photos or ZIPs, one or many per request; answers one verdict per file.

    CSRF middleware reads request.POST, which parses the whole body; more files than
    DATA_UPLOAD_MAX_NUMBER_FILES would then end in Django's bare 400 page. So the body is parsed
    here first, that case answered with a clear message, and the CSRF check run right after.
    """
    dataset = selectors.get_dataset_for_user(request.user, pk)
    too_long = declared_length_over(request)
    if too_long is not None:
        # Refused from the headers, before a byte of the body is read.
        refusal = (
            f"This upload is {filesizeformat(too_long)}; one upload may carry at most "
            f"{filesizeformat(settings.DATASET_MAX_TOTAL_BYTES)}. Send the photos in smaller batches."
        )
        if _wants_json(request):
            return JsonResponse({"error": refusal, "files": []}, status=413)
        return _render_grid_or_page(request, dataset, status=413, upload_error=refusal)
    limiter = FileSizeLimitHandler(request)
    # Assigned rather than inserted into (both are Django's documented ways): the stubs type the
    # handlers as a list or, once the body is parsed, an immutable one; assigning after the body was
    # read raises instead of leaving the limit silently unused.
    request.upload_handlers = [limiter, *request.upload_handlers]
    error: str | None = None
    files = []
    try:
        files = request.FILES.getlist("files")
    except TooManyFilesSent:
        error = (
            f"Too many files in one upload: send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} at a time "
            f"(a dataset holds at most {settings.DATASET_MAX_IMAGES} photos)."
        )
    except MultiPartParserError:
        error = "The upload could not be read: try again."
    if error is None:
        refused = _csrf_refusal(request, pk)
        if refused is not None:
            return refused
        if not files and not limiter.skipped:
            error = "Choose at least one photo or ZIP to upload."
    if error is None:
        try:
            verdicts = [
                services.FileVerdict(
                    services.display_name_sanitise(name),
                    False,
                    f"Too large: over {filesizeformat(limiter.limit)}, the most per file "
                    "(we stopped reading it there).",
                )
                for name in limiter.skipped
            ]
            verdicts += services.dataset_upload_files(dataset=dataset, files=files) if files else []
        except services.DatasetError as exc:
            error = str(exc)
    if error is not None:
        if _wants_json(request):
            return JsonResponse({"error": error, "files": []}, status=400)
        return _render_grid_or_page(request, dataset, status=400, upload_error=error)
    if _wants_json(request):
        readiness = selectors.dataset_readiness(dataset)
        return JsonResponse(
            {"files": [v.__dict__ for v in verdicts], "readiness": readiness.text, "count": readiness.count}
        )
    return _render_grid_or_page(request, dataset, verdicts=verdicts)


@login_required
@require_POST
def dataset_caption_template(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = CaptionTemplateForm(request.POST)
    if form.is_valid():
        try:
            changed = services.dataset_caption_template_apply(
                dataset=dataset, template=form.cleaned_data["template"]
            )
            messages.success(request, f"Caption applied to {changed} photos.")
        except services.DatasetError as exc:
            messages.error(request, str(exc))
    if request.htmx:
        return _render_grid_or_page(request, dataset)
    return redirect("training:dataset", pk=pk)


@login_required
@require_POST
def image_caption(request: AuthenticatedHtmxHttpRequest, pk: int, image_pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    form = CaptionForm(request.POST)
    status, note = 200, "Saved"
    if not form.is_valid():
        status, note = 400, " ".join(str(error) for error in form.errors["caption"])
    else:
        try:
            services.dataset_image_caption_set(image=image, caption=form.cleaned_data["caption"])
        except services.DatasetError as exc:
            status, note = 400, str(exc)
    if request.htmx:
        return render(
            request, f"{DATASET_PAGE}#caption_status", {"note": note, "ok": status == 200}, status=status
        )
    if status == 200:
        messages.success(request, "Caption saved.")
    else:
        messages.error(request, note)
    return redirect("training:dataset", pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def image_delete(request: AuthenticatedHtmxHttpRequest, pk: int, image_pk: int) -> HttpResponse:
    """GET asks for confirmation (the no-JavaScript path; htmx asks with hx-confirm), POST deletes."""
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    if request.method == "GET":
        return render(
            request, "training/image_delete.html", {"image": image, "training": image.dataset.training}
        )
    dataset = image.dataset
    try:
        services.dataset_image_delete(image=image)
    except services.DatasetError as exc:
        messages.error(request, str(exc))
    if request.htmx:
        return _render_grid_or_page(request, dataset)
    return redirect("training:dataset", pk=pk)


@login_required
@require_GET
def image_thumbnail(request: AuthenticatedHttpRequest, pk: int, image_pk: int) -> FileResponse:
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    try:
        handle = storage.get_storage(storage.PRIVATE).open(image.thumbnail_name, "rb")
    except FileNotFoundError:
        raise Http404("This thumbnail is missing.")
    response = FileResponse(handle, content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_POST
def image_use_as_input(request: AuthenticatedHttpRequest, pk: int, image_pk: int) -> HttpResponse:
    """Start an image from one of the dataset's photos, with the model this training made."""
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    try:
        staged = services.dataset_image_use_as_input(image=image)
    except services.DatasetError as exc:
        messages.error(request, str(exc))
        return redirect("training:dataset", pk=pk)
    query = {"staged": staged.pk}
    if (model_pk := selectors.training_ready_model_pk(image.dataset.training)) is not None:
        query["model"] = model_pk
    return redirect(f"{reverse('generations:generate')}?{urlencode(query)}")


# --- Captions in bulk: find and replace, download, import ------------------------------------------
def _bulk_context(**values: Any) -> dict:
    return {"replace_form": CaptionReplaceForm(), "import_form": CaptionImportForm(), **values}


def _bulk_answer(
    request: AuthenticatedHtmxHttpRequest, dataset: Dataset, *, status: int, changed: bool, **values: Any
) -> HttpResponse:
    """htmx: the bulk-edit card, and the grid told to reload when captions changed; else the page."""
    if request.htmx:
        response = render(
            request,
            f"{BULK_PARTIAL}#bulk",
            {
                "training": dataset.training,
                "editable": dataset.training.status == TrainingJob.Status.DRAFT,
                "bulk": _bulk_context(**values),
            },
            status=status,
        )
        if changed:
            response["HX-Trigger"] = "dataset-changed"
        return response
    return render(
        request, DATASET_PAGE, _dataset_context(request, dataset, bulk=_bulk_context(**values)), status=status
    )


@login_required
@require_POST
def dataset_captions_replace(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """Without `apply`: the preview ("replaces N occurrences in K captions"). With it: the change,
    refused if the count differs from the preview's (`expected`)."""
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = CaptionReplaceForm(request.POST)
    plan, error, applied = None, "", False
    if form.is_valid():
        data = form.cleaned_data
        args = {"find": data["find"], "replace": data["replace"], "case_sensitive": data["case_sensitive"]}
        try:
            if "apply" in request.POST:
                plan = services.dataset_captions_replace(dataset=dataset, expected=data["expected"], **args)
                applied = True
            else:
                plan = services.dataset_captions_replace_preview(dataset=dataset, **args)
        except services.DatasetError as exc:
            error = str(exc)
    status = 200 if form.is_valid() and not error else 400
    if plan is not None and not applied:  # the preview: carry its count to the apply button
        form = CaptionReplaceForm({**request.POST.dict(), "expected": plan.occurrences})
        form.is_valid()
    return _bulk_answer(
        request,
        dataset,
        status=status,
        changed=applied and bool(plan and plan.captions),
        replace_form=form,
        replace_plan=plan,
        replace_applied=applied,
        replace_error=error,
    )


@login_required
@require_GET
def dataset_captions_export(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The captions as a ZIP of `<photo>.txt` (default) or as CSV (`?format=csv`). Reading them
    changes nothing, so a started training's captions can be downloaded too."""
    dataset = selectors.get_dataset_for_user(request.user, pk)
    fmt = request.GET.get("format", "zip")
    if fmt == "csv":
        data, content_type = services.dataset_captions_csv(dataset=dataset), "text/csv; charset=utf-8"
    elif fmt == "zip":
        data, content_type = services.dataset_captions_zip(dataset=dataset), "application/zip"
    else:
        return HttpResponse("Unknown format: use zip or csv.", status=400, content_type="text/plain")
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="captions-{dataset.training_id}.{fmt}"'
    response["Cache-Control"] = "private, no-store"
    return response


def _csrf_refusal(request: HttpRequest, pk: int) -> HttpResponse | None:
    """The CSRF check, run by hand in a csrf_exempt view once its body has been parsed.
    process_view reads its callback only for csrf_exempt, which this view is: pass a stand-in
    that is not, so the check runs."""
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(
        request, lambda r: HttpResponse(), (pk,), {}
    )


@csrf_exempt  # checked inside, once the size has been checked: see dataset_upload
@login_required
@require_POST
@rate_limited("upload")
def dataset_captions_import(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """Captions from a ZIP of .txt files or a CSV. A body declared over the limit is refused
    before it is read (413); a file over it stops being read at the limit."""
    dataset = selectors.get_dataset_for_user(request.user, pk)
    limit = settings.DATASET_CAPTIONS_IMPORT_MAX_BYTES
    too_long = declared_length_over(request, limit=limit)
    if too_long is not None:
        error = (
            f"This upload is {filesizeformat(too_long)}; a captions file may have at most "
            f"{filesizeformat(limit)}: nothing was imported."
        )
        return _bulk_answer(request, dataset, status=413, changed=False, import_error=error)
    limiter = FileSizeLimitHandler(request, limit=limit)
    request.upload_handlers = [limiter, *request.upload_handlers]
    try:
        form = CaptionImportForm(request.POST, request.FILES)  # reading request.POST parses the body
    except TooManyFilesSent:
        error = "Too many files in one upload: import one captions file at a time."
        return _bulk_answer(request, dataset, status=400, changed=False, import_error=error)
    except MultiPartParserError:
        error = "The upload could not be read: try again."
        return _bulk_answer(request, dataset, status=400, changed=False, import_error=error)
    refused = _csrf_refusal(request, pk)
    if refused is not None:
        return refused
    if limiter.skipped:
        error = f"This file is over {filesizeformat(limit)}, the most a captions file may have (we stopped reading it there): nothing was imported."
        return _bulk_answer(request, dataset, status=413, changed=False, import_error=error)
    if not form.is_valid():
        return _bulk_answer(request, dataset, status=400, changed=False, import_form=form)
    upload = form.cleaned_data["file"]
    try:
        report = services.dataset_captions_import(dataset=dataset, upload=upload, size=upload.size or 0)
    except services.DatasetError as exc:
        return _bulk_answer(request, dataset, status=400, changed=False, import_error=str(exc))
    return _bulk_answer(request, dataset, status=200, changed=bool(report.updated), import_report=report)


# --- Start, details and actions -------------------------------------------------------------------
def _insufficient_message(exc: InsufficientCredits) -> str:
    return format_html(
        'This training needs {} credits and your balance is {}. <a href="{}">Buy credits</a> to continue.',
        exc.needed,
        exc.balance,
        reverse("billing:overview"),
    )


def _sample_prompt_count(text: object) -> int:
    """How many sample prompts the raw field holds (capped as the form caps it, for the estimate)."""
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return min(len(lines), settings.SAMPLE_GRID_PROMPTS)


def _estimate_context(steps: object, sample_prompts: object = None, trainer: str = DEFAULT_TRAINER) -> dict:
    """The cost of `steps` (raw input) on `trainer` with a grid of `sample_prompts` (the raw field;
    None: the default number), or none when that trainer's steps field refuses them."""
    field = trainer_params_form(trainer).base_fields["steps"]  # its bounds are the only copy of the limits
    try:
        valid = field.clean(steps)
    except ValidationError:
        return {"estimate": None, "steps_field": field}
    prompts = settings.SAMPLE_GRID_PROMPTS if sample_prompts is None else _sample_prompt_count(sample_prompts)
    credits, dollars = services.training_estimate(steps=valid, sample_prompts=prompts, trainer=trainer)
    images, grid_credits = services.sample_grid_estimate(prompts=prompts)
    return {
        "estimate": {
            "credits": credits,
            "dollars": dollars,
            "steps": valid,
            "training_credits": credits - grid_credits,
            "grid": {
                "prompts": prompts,
                "strengths": len(settings.SAMPLE_GRID_STRENGTHS),
                "images": images,
                "credits": grid_credits,
            },
        },
        "steps_field": field,
    }


def _trainer_key(raw: object, default: str) -> str:
    """A trainer key from the request, or `default` when it names none of the registry's."""
    chooser = TrainerChoiceForm({"trainer": raw})
    return chooser.cleaned_data["trainer"] if chooser.is_valid() else default


def _trainer_cards(job: TrainingJob) -> list[dict]:
    """The start page's first choice: each trainer with the time and cost of its default run."""
    cards = []
    for trainer in TRAINERS.values():
        steps = int(trainer.setting("steps").default)
        credits, dollars = services.training_estimate(steps=steps, trainer=trainer.key)
        cards.append(
            {
                "trainer": trainer,
                "steps": steps,
                "minutes": max(1, round(float(trainer.seconds(steps=steps)) / 60)),
                "credits": credits,
                "dollars": dollars,
            }
        )
    return cards


def _params_form(job: TrainingJob, trainer: str, *args: Any, **kwargs: Any) -> Any:
    form_class = trainer_params_form(trainer)
    return form_class(*args, estimate_url=reverse("training:estimate", args=[job.pk]), **kwargs)


def _start_context(
    request: AuthenticatedHttpRequest, job: TrainingJob, form: Any, trainer: str, **extra
) -> dict:
    chosen = trainer_get(trainer)
    autocaption = form["autocaption"].value() if "autocaption" in form.fields else False
    return {
        "training": job,
        "form": form,
        "trainer": chosen,
        "trainer_cards": _trainer_cards(job),
        "trainer_errors": extra.pop("trainer_errors", []),
        "presets": chosen.presets,
        "balance": balance_for_user(request.user),
        "readiness": selectors.dataset_readiness(job.dataset),
        # Who captions what: the trainer's autocaption only for photos without a caption.
        "caption_plan": selectors.dataset_caption_plan(job.dataset, autocaption=bool(autocaption)),
        **_estimate_context(form["steps"].value(), form["sample_prompts"].value(), trainer),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
@rate_limited("training_start")
def training_start(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """The trainer, its parameters with presets and the live cost estimate; POST holds the credits
    and starts. `?trainer=` picks another trainer (its own settings, swapped in by htmx)."""
    job = selectors.get_training_with_dataset_for_user(request.user, pk)
    if job.status != TrainingJob.Status.DRAFT:
        return redirect("training:detail", pk=job.pk)
    insufficient = None
    if request.method == "POST":
        trainer = _trainer_key(request.POST.get("trainer", job.trainer), job.trainer)
        form = _params_form(job, trainer, request.POST)
        trainer_errors: list[str] = []
        if form.is_valid():
            # What this trainer cannot take (a dataset it cannot read, captions without the name):
            # field errors here, never a failed paid run.
            for name, problems in trainer_get(trainer).dataset_problems(job, form.params()).items():
                for problem in problems:
                    if name in form.fields:
                        form.add_error(name, problem)
                    else:
                        trainer_errors.append(problem)
        if form.is_valid() and not trainer_errors:
            try:
                services.training_start(
                    job=job,
                    params=form.params(),
                    preset=form.cleaned_data.get("preset") or "",
                    trainer=trainer,
                )
            except InsufficientCredits as exc:
                insufficient = _insufficient_message(exc)
            except services.PipelineError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Training started. This page follows it live.")
                return redirect("training:detail", pk=job.pk)
        status = 402 if insufficient else 400
        return render(
            request,
            START_PAGE,
            _start_context(
                request, job, form, trainer, insufficient=insufficient, trainer_errors=trainer_errors
            ),
            status=status,
        )
    trainer = _trainer_key(request.GET.get("trainer", job.trainer), job.trainer)
    same_trainer = trainer == job.trainer
    form = _params_form(
        job,
        trainer,
        initial=params_initial(
            preset=request.GET.get("preset", ""),
            saved=job.params
            if same_trainer
            else {"sample_prompts": (job.params or {}).get("sample_prompts")},
            sample_prompts=services.sample_prompts_default(job=job),
            trainer=trainer,
        ),
    )
    if job.preset and same_trainer and "preset" not in request.GET:
        form.initial.setdefault("preset", job.preset)
    context = _start_context(request, job, form, trainer)
    if request.htmx:  # a preset or a trainer was picked: new fields, and their cost out of band
        html = render_to_string(f"{START_PAGE}#params", context, request) + render_to_string(
            f"{START_PAGE}#estimate", {**context, "oob": True}, request
        )
        return HttpResponse(html)
    return render(request, START_PAGE, context)


@login_required
@require_GET
def training_estimate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The cost fragment for `?steps=`, refreshed as the steps field changes."""
    job = selectors.get_training_for_user(request.user, pk)
    context = {
        "training": job,
        "balance": balance_for_user(request.user),
        **_estimate_context(
            request.GET.get("steps", ""),
            request.GET.get("sample_prompts"),
            _trainer_key(request.GET.get("trainer", job.trainer), job.trainer),
        ),
    }
    return render(request, f"{START_PAGE}#estimate", context)


PARAM_LABELS = {
    name: field.label or name.replace("_", " ").capitalize()
    for name, field in TrainingParamsForm.base_fields.items()
    if name != "preset"
}


EVENTS_PER_PAGE = 50


def _detail_context(job: TrainingJob) -> dict:
    """The status card: what the page shows and its live fragment refreshes every 3 seconds."""
    return {
        "training": job,
        "timeline": selectors.training_timeline(job),
        "loss_svg": loss_chart_svg([(int(p[0]), float(p[1])) for p in job.loss_history or []]),
        "params": [
            (PARAM_LABELS.get(k, k), " · ".join(v) if isinstance(v, list) else v)
            for k, v in (job.params or {}).items()
        ],
        "failed_stage_label": TrainingJob.Status(job.failed_stage).label
        if job.failed_stage in TrainingJob.Status.values
        else "",
        "preset_label": trainer_get(job.trainer).presets.get(job.preset, {}).get("label", ""),
        "trainer": trainer_get(job.trainer),
        "speed": selectors.speed_text(job.seconds_per_step),
        "eta": duration_text(job.eta_seconds) if job.eta_seconds is not None else "",
        "refunded": job.cost_credits
        if job.status in (TrainingJob.Status.FAILED, TrainingJob.Status.CANCELED) and job.credit_reference
        else None,
    }


def _samples_context(job: TrainingJob) -> dict:
    succeeded = job.status == TrainingJob.Status.SUCCEEDED
    return {
        "show_samples": succeeded,
        "grid": selectors.training_sample_grid(job) if succeeded else None,
        "poll_url": reverse("training:samples", args=[job.pk]),
        "rerun_url": reverse("training:samples_rerun", args=[job.pk]),
    }


@login_required
@require_GET
def training_samples(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The sample grid fragment, polled while its images are being made; 286 once none is left."""
    job = selectors.get_training_for_user(request.user, pk)
    context = _samples_context(job)
    return polled(
        render(request, "partials/_sample_grid.html", context),
        finished=not (context["grid"] and context["grid"]["pending"]),
    )


@login_required
@require_POST
def training_samples_rerun(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Run the grid's failed images again (or make the grid, if it never started): no charge."""
    job = selectors.get_training_for_user(request.user, pk)
    try:
        queued = services.sample_grid_rerun(job=job)
    except services.SampleGridError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Running {queued} sample image{'s' if queued != 1 else ''} again, at no charge."
            if queued
            else "Making the sample images, at no charge.",
        )
    return redirect("training:detail", pk=job.pk)


def _events_page(request: HttpRequest, job: TrainingJob) -> dict:
    """The latest 50 events (oldest of them first), and an "earlier events" link above them. The
    page is read as ids only: the rows' HTML is cached on those ids, so the events themselves are
    read (one more query, lazily, inside the cached block) only when that HTML is not cached yet."""
    page = cursor_page(
        selectors.training_events(job).only("pk", "created_at"),
        ordering=selectors.EVENT_ORDERING,
        cursor=request.GET.get(CURSOR_PARAM),
        per_page=EVENTS_PER_PAGE,
        target="training-events",
        label="Earlier events",
        swap="afterbegin",
    )
    ids = [e.pk for e in reversed(page.object_list)]
    return {
        "page": page,
        # A callable, which the template calls inside the cached block: on a cache hit the
        # queryset is not even built (building it cost about 0.5 ms a page).
        "events": lambda: selectors.training_events_by_ids(job, ids),
        "last_event_id": ids[-1] if ids else 0,
        # Events are written once and never change: their ids say what the rows show.
        "events_key": fragment_key([(job.pk, *ids)]),
    }


def _last_id(request: HttpRequest) -> int:
    value = request.GET.get("since", "")
    return int(value) if value.isdigit() else 0


@login_required
@require_GET
def training_detail(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """The training's page. Its live fragment (htmx, every 3 s, `?since=<last event id>`) is the
    status card plus only the events after that one, appended to the log out of band; 286 stops
    the polling once the training is over. The "earlier events" link pages back through the log."""
    job = selectors.get_training_page_for_user(request.user, pk)
    if wants_more(request):
        return render_list(request, DETAIL_PAGE, _events_page(request, job))
    if request.htmx:
        # Someone is watching: ask Replicate for fresh logs now and then (webhooks only say
        # start and completed), so the progress bar and the loss curve move.
        services.training_watch(job=job)
        last_id = _last_id(request)
        new_events = selectors.training_events_since(job, last_id)
        context = {
            **_detail_context(job),
            "new_events": new_events,
            "last_event_id": new_events[-1].pk if new_events else last_id,
            # The cost card, out of band, when it may have changed: its Replicate id and start
            # come with new events, its GPU cost as the training ends (the last poll).
            "cost_oob": bool(new_events) or not job.is_active,
        }
        return polled(
            render(request, f"{DETAIL_PAGE}#status", context),
            finished=not job.is_active,
            credits_changed=job.status != TrainingJob.Status.SUCCEEDED,
        )
    return render(
        request,
        DETAIL_PAGE,
        {
            **_detail_context(job),
            **_events_page(request, job),
            **_samples_context(job),
            "trainer_captions": selectors.trainer_captions_rows(job),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def training_cancel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST cancels (at Replicate too) and refunds the credits."""
    job = selectors.get_training_for_user(request.user, pk)
    if request.method == "GET":
        if not job.is_active:
            return redirect("training:detail", pk=job.pk)
        return render(request, "training/cancel.html", {"training": job})
    try:
        services.training_cancel(job=job)
        messages.success(request, "Training canceled. Its credits were refunded.")
    except services.PipelineError as exc:
        messages.error(request, str(exc))
    except IntegrationError as exc:
        messages.error(request, f"Replicate did not accept the cancel: {exc.user_text}")
    return redirect("training:detail", pk=job.pk)


@login_required
@require_POST
def training_retry(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    job = selectors.get_training_for_user(request.user, pk)
    try:
        services.training_retry(job=job)
        messages.success(request, "Retrying from the stage that failed.")
    except InsufficientCredits as exc:
        messages.error(request, _insufficient_message(exc))
    except services.PipelineError as exc:
        messages.error(request, str(exc))
    return redirect("training:detail", pk=job.pk)


@login_required
@require_POST
def training_duplicate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """A new draft with the same settings, photos and captions; lands on its dataset page."""
    job = selectors.get_training_for_user(request.user, pk)
    try:
        copy = services.training_duplicate(
            job=job, use_trainer_captions=request.POST.get("trainer_captions") == "1"
        )
    except IntegrationError as exc:
        messages.error(request, exc.user_text)
        return redirect("training:detail", pk=job.pk)
    if request.POST.get("trainer_captions") == "1" and job.trainer_captions:
        messages.success(request, f"Copied “{job.name}” with its photos, your captions and the trainer's.")
    else:
        messages.success(request, f"Copied “{job.name}” with its photos and captions.")
    return redirect("training:dataset", pk=copy.pk)


# --- Captioning the photos with a vision model -------------------------------------------------------
def _captioning_context(dataset: Dataset, batch=None, since: float | None = None, **extra) -> dict:
    """The "caption all photos" form and the latest batch's progress, for the dataset page.

    `since` (a timestamp) is when the caption boxes on the page were read: the polled panel sends
    again, out of band, every caption finished after it. Read before the tasks by default.
    """
    if since is None:
        since = timezone.now().timestamp()
    batch = batch or selectors.caption_batch_latest(dataset)
    tasks = selectors.caption_tasks(batch) if batch else []
    form = CaptionBatchForm()
    estimate, _ = _caption_estimate_or_error(
        dataset, {name: field.initial for name, field in form.fields.items() if field.initial is not None}
    )
    inspection, _ = _caption_estimate_or_error(
        dataset,
        {
            **form.initial,
            "photos": "all",
            "mode": "replace",
            "style": "natural",
            "trigger_placement": "none",
            "model": INSPECTION_MODEL,
        },
    )
    return {
        "caption_form": form,
        "caption_estimate": estimate,
        "inspection_estimate": inspection if inspection and inspection.photos else None,
        "caption_since": since,
        "editable": dataset.training.status == TrainingJob.Status.DRAFT,
        "caption_batch": batch,
        "caption_running": batch is not None and batch.status == CaptionBatch.Status.RUNNING,
        "caption_tasks": tasks,
        "caption_counts": selectors.caption_batch_counts(tasks),
        "caption_task_by_image": {task.image_id: task for task in tasks if task.image_id},
        **extra,
    }


def _caption_estimate_or_error(dataset: Dataset, data) -> tuple[Any, str]:
    form = CaptionBatchForm(data)
    if not form.is_valid():
        return None, "Choose the photos, the mode, the style and the model."
    try:
        return (
            services.caption_batch_estimate(
                dataset=dataset,
                photos=form.cleaned_data["photos"],
                mode=form.cleaned_data["mode"],
                model_ref=form.cleaned_data["model"],
            ),
            "",
        )
    except services.CaptioningError as exc:
        return None, str(exc)


@login_required
@require_GET
def caption_estimate(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    """The cost line under the form ("N photos, C credits"), before anything is paid."""
    dataset = selectors.get_dataset_for_user(request.user, pk)
    estimate, error = _caption_estimate_or_error(dataset, request.GET)
    return render(
        request,
        f"{DATASET_PAGE}#caption_cost",
        {"estimate": estimate, "error": error, "balance": balance_for_user(request.user)},
    )


@login_required
@require_POST
@rate_limited("caption_start")
def caption_start(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = CaptionBatchForm(request.POST)
    error, batch = "", None
    if not form.is_valid():
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
    else:
        try:
            batch = services.caption_batch_start(
                user=request.user,
                dataset=dataset,
                photos=form.cleaned_data["photos"],
                mode=form.cleaned_data["mode"],
                style=form.cleaned_data["style"],
                trigger_placement=form.cleaned_data["trigger_placement"],
                trigger_template=form.cleaned_data["trigger_template"],
                model_ref=form.cleaned_data["model"],
                purpose=form.cleaned_data["purpose"] or CaptionBatch.Purpose.CAPTION,
            )
        except (services.CaptioningError, InsufficientCredits) as exc:
            error = str(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, "Captioning started.")
        return redirect("training:dataset", pk=pk)
    # The boxes on the page are older than the batch: every caption it finishes is sent to them.
    since = batch.created_at.timestamp() if batch is not None else None
    context = _captioning_context(
        dataset, batch=batch, since=since, caption_error=error, training=dataset.training
    )
    response = render(request, f"{DATASET_PAGE}#caption_panel", context, status=400 if error else 200)
    if batch is not None:
        trigger_client_event(response, CREDITS_CHANGED)
    return response


def _caption_box(image, save_url: str) -> CaptionForm:
    """A photo's caption box, to replace the one on the page (htmx out-of-band swap by its id)."""
    form = CaptionForm.for_image(image, save_url=save_url)
    form.fields["caption"].widget.attrs["hx-swap-oob"] = "true"
    return form


@login_required
@require_GET
def caption_progress(request: AuthenticatedHtmxHttpRequest, pk: int, batch_pk: int) -> HttpResponse:
    """The polled progress panel; photos captioned since `since` also get their caption box
    replaced out of band, so each caption lands in its box as it arrives."""
    batch = selectors.get_caption_batch_for_user(request.user, pk, batch_pk)
    try:
        since = float(request.GET.get("since", ""))
    except ValueError:
        since = 0.0
    context = _captioning_context(batch.dataset, batch=batch, training=batch.dataset.training)
    arrived = [
        task
        for task in context["caption_tasks"]
        if task.status == task.Status.DONE
        and task.image_id
        and task.finished_at
        and task.finished_at.timestamp() > since
    ]
    images = {image.pk: image for image in batch.dataset.images.filter(pk__in=[t.image_id for t in arrived])}
    t = batch.dataset.training_id
    context["caption_arrived"] = [
        _caption_box(images[task.image_id], reverse("training:image_caption", args=[t, task.image_id]))
        for task in arrived
        if task.image_id in images
    ]
    response = render(request, f"{DATASET_PAGE}#caption_panel", context)
    finished = batch.status != batch.Status.RUNNING
    return polled(
        response, finished=finished, credits_changed=finished and context["caption_counts"]["failed"] > 0
    )


@login_required
@require_POST
def caption_cancel(request: AuthenticatedHtmxHttpRequest, pk: int, batch_pk: int) -> HttpResponse:
    batch = selectors.get_caption_batch_for_user(request.user, pk, batch_pk)
    error = ""
    try:
        services.caption_batch_cancel(batch=batch)
    except services.CaptioningError as exc:
        error = str(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, "Captioning canceled; the photos not captioned were refunded.")
        return redirect("training:dataset", pk=pk)
    context = _captioning_context(
        batch.dataset, batch=batch, caption_error=error, training=batch.dataset.training
    )
    response = render(request, f"{DATASET_PAGE}#caption_panel", context)
    trigger_client_event(response, CREDITS_CHANGED)
    return response
