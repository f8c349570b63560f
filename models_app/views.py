from __future__ import annotations

import logging
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.pricing import generation_cost_credits
from billing.selectors import balance_for_user
from billing.services import InsufficientCredits
from fluxsite.htmx import polled
from fluxsite.http import AuthenticatedHtmxHttpRequest, AuthenticatedHttpRequest
from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.ratelimits import rate_limited
from models_app import selectors, services
from models_app.forms import (
    DeleteForm,
    GenerateForm,
    HfAccountForm,
    ImageDeleteForm,
    RenameForm,
    VisibilityForm,
)
from models_app.models import Generation, LoraModel
from training.webhook_records import replicate_webhook_record, webhook_job_hint
from training.webhooks import webhook_response

logger = logging.getLogger(__name__)

DETAIL = "models_app/detail.html"
RECENT_IMAGES = 8


@login_required
@require_GET
def model_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "models_app/list.html", {"cards": selectors.model_cards(request.user)})


def _detail_context(request: AuthenticatedHttpRequest, model: LoraModel, **extra) -> dict:
    return {
        "model": model,
        "recent_images": selectors.images_for_user(request.user, model)[:RECENT_IMAGES],
        "thumbnail_url": selectors.model_thumbnail_url(model),
        "hf_account": selectors.hf_account_for_user(request.user),
        "public_url": request.build_absolute_uri(model_public_path(model)) if model.is_public else "",
        "rename_form": extra.pop("rename_form", None) or RenameForm(initial={"name": model.name}),
        "visibility_choices": LoraModel.Visibility.choices,
        **extra,
    }


def model_public_path(model: LoraModel) -> str:
    from django.urls import reverse

    return reverse("models_app:public", args=[model.public_id])


@login_required
@require_GET
def model_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    model = selectors.get_model_for_user(request.user, pk)
    return render(request, DETAIL, _detail_context(request, model))


@login_required
@require_GET
def model_status(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The status fragment, polled while publishing; HTTP 286 tells htmx to stop polling."""
    model = selectors.get_model_for_user(request.user, pk)
    return polled(
        render(request, f"{DETAIL}#status", _detail_context(request, model)),
        finished=model.status != LoraModel.Status.PUBLISHING,
    )


@login_required
@require_POST
def model_rename(request: AuthenticatedHtmxHttpRequest, pk: int) -> HttpResponse:
    model = selectors.get_model_for_user(request.user, pk)
    form: RenameForm | None  # None once renamed: the title then shows a fresh form
    form = RenameForm(request.POST)
    if form.is_valid():
        model = services.lora_rename(model=model, name=form.cleaned_data["name"])
        form = None
    elif not request.htmx:
        messages.error(request, "A model needs a name of at most 80 characters.")
    if request.htmx:
        return render(
            request,
            f"{DETAIL}#title",
            _detail_context(request, model, rename_form=form),
            status=200 if form is None else 422,
        )
    return redirect("models_app:detail", pk=model.pk)


@login_required
@require_POST
def model_visibility(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    model = selectors.get_model_for_user(request.user, pk)
    form = VisibilityForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose private or public.")
        return redirect("models_app:detail", pk=model.pk)
    try:
        services.lora_set_visibility(model=model, visibility=form.cleaned_data["visibility"])
        messages.success(request, f"The model is now {form.cleaned_data['visibility']}.")
    except IntegrationError as exc:
        messages.error(request, f"Hugging Face did not accept the change: {exc.user_text}")
    return redirect("models_app:detail", pk=model.pk)


@login_required
@require_POST
def model_publish_retry(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    model = selectors.get_model_for_user(request.user, pk)
    try:
        services.lora_publish_retry(model=model)
    except services.LoraStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, "Publishing again to Hugging Face.")
    return redirect("models_app:detail", pk=model.pk)


@login_required
@require_GET
def model_download(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Redirect the owner to an expiring signed link to our own copy of the weights."""
    model = selectors.get_model_for_user(request.user, pk)
    return redirect(storage.signed_url(alias=storage.PRIVATE, name=model.weights_file_name, absolute=False))


@login_required
@require_http_methods(["GET", "POST"])
def model_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    model = selectors.get_model_for_user(request.user, pk)
    # An unticked box posts nothing: bind on the method, not on a non-empty body.
    form = DeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.lora_delete(model=model, delete_hf_repo=form.cleaned_data["delete_hf_repo"])
        except IntegrationError as exc:
            messages.error(request, f"The Hugging Face repository could not be deleted: {exc.user_text}")
            return redirect("models_app:delete", pk=model.pk)
        messages.success(request, f"“{model.name}” was deleted.")
        return redirect("models_app:list")
    return render(request, "models_app/delete.html", {"model": model, "form": form})


@require_GET
def model_public(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The shareable page: no login for a public model; a private one is 404 except for its owner."""
    model = selectors.get_public_model(public_id, request.user)
    return render(
        request,
        "models_app/public.html",
        {
            "model": model,
            "thumbnail_url": selectors.model_thumbnail_url(model),
        },
    )


@sensitive_post_parameters("token")
@login_required
@require_http_methods(["GET", "POST"])
def hf_account(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = HfAccountForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            account = services.hf_account_connect(user=request.user, token=form.cleaned_data["token"])
        except IntegrationError as exc:
            form.add_error("token", exc.message)
        else:
            messages.success(request, f"Connected to Hugging Face as {account.username}.")
            return redirect("models_app:hf_account")
    return render(
        request,
        "models_app/hf_account.html",
        {
            "form": form,
            "account": selectors.hf_account_for_user(request.user),
        },
    )


@login_required
@require_POST
def hf_account_disconnect(request: AuthenticatedHttpRequest) -> HttpResponse:
    services.hf_account_disconnect(user=request.user)
    messages.success(request, "Your Hugging Face account was disconnected.")
    return redirect("models_app:hf_account")


# --- Generating images and the gallery --------------------------------------------------------------------
GENERATE = "models_app/generate.html"
GENERATION = "models_app/gallery_generation.html"
GALLERY_PER_PAGE = 24


def _model_from_request(request: HttpRequest, data) -> LoraModel | None:
    """The model named by `model=<pk>`: 404 for someone else's, None when absent or not a number."""
    value = str(data.get("model") or "")
    return selectors.get_model_for_user(request.user, int(value)) if value.isdigit() else None


def _generate_context(request: HttpRequest, form: GenerateForm, model: LoraModel | None, **extra) -> dict:
    usable = list(selectors.models_for_generation(request.user))
    if model is None and usable:
        model = usable[0]
    num = form["num_outputs"].value()
    try:
        num = min(max(int(num), 1), 4)
    except (TypeError, ValueError):
        num = 1
    prompt = str(form["prompt"].value() or "")
    return {
        "form": form,
        "model": model,
        "usable_models": usable,
        "model_ready": model is not None and any(m.pk == model.pk for m in usable),
        "suggestions": services.prompt_suggestions(model=model) if model else [],
        "effective_prompt": services.effective_prompt(prompt=prompt, model=model) if model else prompt,
        "prompt_has_trigger": bool(model)
        and services.effective_prompt(prompt=prompt, model=model) == " ".join(prompt.split()),
        "cost": generation_cost_credits(num_images=num),
        "num_outputs": num,
        "balance": balance_for_user(request.user),
        **extra,
    }


def _limits(model: LoraModel | None) -> dict:
    """The ranges of the model's target, from its own schema; none when unknown (the form's narrow defaults)."""
    if model is None:
        return {}
    try:
        return services.generation_limits(model=model)
    except services.GenerationError:
        return {}
    except IntegrationError as exc:
        logger.warning("generate: could not read the input schema for model %s: %s", model.pk, exc)
        return {}


def _again_form(request: HttpRequest, generation: Generation, limits: dict) -> GenerateForm:
    """The generate form prefilled from an earlier generation (same seed), with Replicate's refusals."""
    initial = {"prompt": generation.prompt, **generation.params}
    form = GenerateForm(initial=initial, limits=limits)
    errors = services.generation.field_errors(generation=generation) if generation.invalid_fields else {}
    if errors:
        form = GenerateForm(data={k: "" if v is None else v for k, v in initial.items()}, limits=limits)
        form.is_valid()
        for field, messages_ in errors.items():
            for message in messages_:
                form.add_error(None if field == "__all__" else field, message)
    return form


@login_required
@require_http_methods(["GET", "POST"])
@rate_limited("generate")
def generate(request: HttpRequest) -> HttpResponse:
    """The generate page; `?model=<pk>` preselects a model, `?again=<generation pk>` prefills everything."""
    if request.method == "GET":
        model = _model_from_request(request, request.GET)
        again = request.GET.get("again", "")
        if again.isdigit():
            generation = selectors.get_generation_for_user(request.user, int(again))
            model = model or generation.lora_model
            form = _again_form(request, generation, _limits(model))
        else:
            model = model or next(iter(selectors.models_for_generation(request.user)[:1]), None)
            form = GenerateForm(limits=_limits(model))
        return render(request, GENERATE, _generate_context(request, form, model))
    model = _model_from_request(request, request.POST)
    form = GenerateForm(request.POST, limits=_limits(model))
    if model is None:
        form.add_error(None, "Choose one of your models.")
    if form.is_valid():
        try:
            generation = services.generation_start(
                user=request.user, model=model, prompt=form.cleaned_data["prompt"], params=form.params()
            )
        except InsufficientCredits as exc:
            form.add_error(None, f"Not enough credits: {exc}")
        except services.GenerationError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("models_app:generation", pk=generation.pk)
    return render(
        request, GENERATE, _generate_context(request, form, model), status=422 if request.htmx else 200
    )


@login_required
@require_GET
def generate_preview(request: HttpRequest) -> HttpResponse:
    """The live preview fragment: the prompt as it will be sent, and the cost."""
    model = _model_from_request(request, request.GET)
    form = GenerateForm(request.GET)
    return render(request, f"{GENERATE}#preview", _generate_context(request, form, model))


def _generation_context(request: HttpRequest, generation: Generation) -> dict:
    return {
        "generation": generation,
        "images": list(generation.images.order_by("index")),
        "refunded": generation.status in (Generation.Status.FAILED, Generation.Status.CANCELED),
    }


@login_required
@require_GET
def generation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    generation = selectors.get_generation_for_user(request.user, pk)
    return render(request, GENERATION, _generation_context(request, generation))


@login_required
@require_GET
def generation_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The status fragment, polled while the images are made; HTTP 286 stops the polling."""
    generation = selectors.get_generation_for_user(request.user, pk)
    return polled(
        render(request, f"{GENERATION}#status", _generation_context(request, generation)),
        finished=generation.is_finished,
        credits_changed=True,
    )


@login_required
@require_POST
def generation_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    generation = selectors.get_generation_for_user(request.user, pk)
    try:
        services.generation_cancel(generation=generation)
        messages.success(request, "Canceled. Your credits were refunded.")
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    except IntegrationError as exc:
        messages.error(request, f"Replicate did not accept the cancel: {exc.user_text}")
    return redirect("models_app:generation", pk=generation.pk)


def _gallery_page(request: HttpRequest, model: LoraModel | None):
    return Paginator(selectors.images_for_user(request.user, model), GALLERY_PER_PAGE).get_page(
        request.GET.get("page")
    )


@login_required
@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    return render(request, "models_app/gallery.html", {"page": _gallery_page(request, None), "model": None})


@login_required
@require_GET
def model_gallery(request: HttpRequest, pk: int) -> HttpResponse:
    model = selectors.get_model_for_user(request.user, pk)
    return render(request, "models_app/gallery.html", {"page": _gallery_page(request, model), "model": model})


@login_required
@require_GET
def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    model = image.generation.lora_model
    return render(
        request,
        "models_app/gallery_image.html",
        {
            "image": image,
            "generation": image.generation,
            "model": model,
            "is_cover": model is not None and model.cover_image_name == image.file_name,
        },
    )


@login_required
@require_GET
def image_download(request: HttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    extension = image.file_name.rsplit(".", 1)[-1]
    content_type = {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png"}.get(
        extension, "application/octet-stream"
    )
    response = StreamingHttpResponse(
        storage.file_iter(alias=storage.PUBLIC, name=image.file_name), content_type=content_type
    )
    response["Content-Disposition"] = (
        f'attachment; filename="fluxsite-{image.generation_id}-{image.index + 1}.{extension}"'
    )
    return response


@login_required
@require_http_methods(["GET", "POST"])
def image_delete(request: HttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    form = ImageDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        model_id = image.generation.lora_model_id
        services.generated_image_delete(image=image)
        messages.success(request, "The image was deleted.")
        return (
            redirect("models_app:model_gallery", pk=model_id) if model_id else redirect("models_app:gallery")
        )
    return render(request, "models_app/gallery_image_delete.html", {"image": image, "form": form})


@login_required
@require_POST
def image_cover(request: HttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    model = image.generation.lora_model
    if model is None:
        messages.error(request, "The model this image was made with no longer exists.")
        return redirect("models_app:image", pk=image.pk)
    try:
        services.lora_set_cover(model=model, image=image)
        messages.success(request, f"This image is now the cover of “{model.name}”.")
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    return redirect("models_app:image", pk=image.pk)


@csrf_exempt  # signed by Replicate instead: verified on the raw body by the shared service
@require_POST
def replicate_webhook(request: HttpRequest) -> HttpResponse:
    """Replicate's prediction webhooks: the same recording as the training endpoint's, then a task."""
    receipt = replicate_webhook_record(
        headers=request.headers,
        body=request.body,
        kind="prediction",
        job_hint=webhook_job_hint(request.GET.get("gen")),
        task="models_app.tasks.prediction_webhook_process_task",
    )
    return webhook_response(receipt)
