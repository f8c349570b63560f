from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import TooManyFilesSent
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fluxsite.integrations import storage
from training import selectors, services
from training.forms import CaptionForm, CaptionTemplateForm, TrainingCreateForm
from training.models import Dataset

DATASET_PAGE = "training/dataset.html"


@login_required
@require_GET
def training_list(request: HttpRequest) -> HttpResponse:
    trainings = selectors.trainings_for_user(request.user)
    return render(request, "training/list.html", {"trainings": trainings})


@login_required
@require_http_methods(["GET", "POST"])
def training_new(request: HttpRequest) -> HttpResponse:
    form = TrainingCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        job = services.training_create(owner=request.user, **form.cleaned_data)
        return redirect("training:dataset", pk=job.pk)
    return render(request, "training/new.html", {"form": form})


def _dataset_context(dataset: Dataset, **extra) -> dict:
    images = list(dataset.images.all())
    return {
        "training": dataset.training,
        "dataset": dataset,
        "images": images,
        "readiness": selectors.dataset_readiness(dataset, images),
        "template_form": CaptionTemplateForm(initial={"template": dataset.caption_template}),
        "editable": dataset.training.status == dataset.training.Status.DRAFT,
        "limits": {
            "min": settings.DATASET_MIN_IMAGES,
            "max": settings.DATASET_MAX_IMAGES,
            "file_mb": settings.DATASET_MAX_FILE_BYTES // (1024 * 1024),
        },
        **extra,
    }


def _render_grid_or_page(request: HttpRequest, dataset: Dataset, status: int = 200, **extra) -> HttpResponse:
    template = f"{DATASET_PAGE}#grid" if request.htmx else DATASET_PAGE
    return render(request, template, _dataset_context(dataset, **extra), status=status)


@login_required
@require_GET
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    return _render_grid_or_page(request, dataset)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@csrf_exempt  # checked inside, once the body is parsed: see below
@login_required
@require_POST
def dataset_upload(request: HttpRequest, pk: int) -> HttpResponse:
    """Photos or ZIPs, one or many per request; answers one verdict per file.

    CSRF middleware reads request.POST, which parses the whole body; more files than
    DATA_UPLOAD_MAX_NUMBER_FILES would then end in Django's bare 400 page. So the body is parsed
    here first, that case answered with a clear message, and the CSRF check run right after.
    """
    dataset = selectors.get_dataset_for_user(request.user, pk)
    error = None
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
        refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (pk,), {})
        if refused is not None:
            return refused
        if not files:
            error = "Choose at least one photo or ZIP to upload."
    if error is None:
        try:
            verdicts = services.dataset_upload_files(dataset=dataset, files=files)
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
def dataset_caption_template(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = selectors.get_dataset_for_user(request.user, pk)
    form = CaptionTemplateForm(request.POST)
    if form.is_valid():
        try:
            changed = services.dataset_caption_template_apply(dataset=dataset, template=form.cleaned_data["template"])
            messages.success(request, f"Caption applied to {changed} photos.")
        except services.DatasetError as exc:
            messages.error(request, str(exc))
    if request.htmx:
        return _render_grid_or_page(request, dataset)
    return redirect("training:dataset", pk=pk)


@login_required
@require_POST
def image_caption(request: HttpRequest, pk: int, image_pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    form = CaptionForm(request.POST)
    status, note = 200, "Saved"
    if not form.is_valid():
        status, note = 400, "Too long: at most 1000 characters"
    else:
        try:
            services.dataset_image_caption_set(image=image, caption=form.cleaned_data["caption"])
        except services.DatasetError as exc:
            status, note = 400, str(exc)
    if request.htmx:
        return render(request, f"{DATASET_PAGE}#caption_status", {"note": note, "ok": status == 200}, status=status)
    if status == 200:
        messages.success(request, "Caption saved.")
    else:
        messages.error(request, note)
    return redirect("training:dataset", pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def image_delete(request: HttpRequest, pk: int, image_pk: int) -> HttpResponse:
    """GET asks for confirmation (the no-JavaScript path; htmx asks with hx-confirm), POST deletes."""
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    if request.method == "GET":
        return render(request, "training/image_delete.html", {"image": image, "training": image.dataset.training})
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
def image_thumbnail(request: HttpRequest, pk: int, image_pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk, image_pk)
    try:
        handle = storage.get_storage(storage.PRIVATE).open(image.thumbnail_name, "rb")
    except FileNotFoundError:
        raise Http404("This thumbnail is missing.")
    response = FileResponse(handle, content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return response
