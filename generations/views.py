"""Generating images with a LoRA model, following them, and the gallery of what was made."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.pricing import generation_cost_credits, upscale_cost_credits
from billing.selectors import balance_for_user
from billing.services import InsufficientCredits
from fluxsite.htmx import polled
from fluxsite.http import AuthenticatedHtmxHttpRequest, AuthenticatedHttpRequest
from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.pagination import CURSOR_PARAM, CursorPage, cursor_page, render_list
from fluxsite.ratelimits import rate_limited
from generations import selectors, services
from generations.forms import CompareForm, GenerateForm, ImageDeleteForm, UpscaleForm
from generations.models import GeneratedImage, Generation, InputImage
from models_app.models import LoraModel
from models_app.selectors import get_model_for_user

logger = logging.getLogger(__name__)

# --- Generating images and the gallery --------------------------------------------------------------------
GENERATE = "generations/generate.html"
GENERATION = "generations/gallery_generation.html"
GALLERY_PER_PAGE = 24


def _model_from_request(request: AuthenticatedHttpRequest, data) -> LoraModel | None:
    """The model named by `model=<pk>`: 404 for someone else's, None when absent or not a number."""
    value = str(data.get("model") or "")
    return get_model_for_user(request.user, int(value)) if value.isdigit() else None


def _picker(request: AuthenticatedHttpRequest, model: LoraModel | None) -> list[LoraModel]:
    """The model picker's options: the recent usable models (or the search's), with the chosen one."""
    choices = selectors.model_picker_choices(request.user, query=request.GET.get("model_q", ""))
    if model is not None and selectors.model_is_usable(model) and all(m.pk != model.pk for m in choices):
        choices.insert(0, model)
    return choices


def _pk(data, name: str) -> int | None:
    value = str(data.get(name) or "")
    return int(value) if value.isdigit() else None


def _owned_inputs(request: AuthenticatedHttpRequest, data) -> dict:
    """The gallery image, earlier generation and second model a form names, each the person's own:
    404 for anyone else's id (nothing is revealed, nothing spent)."""
    found: dict = {"source_image": None, "staged": None, "reuse": None, "extra_model": None}
    if (pk := _pk(data, "source_image")) is not None:
        found["source_image"] = selectors.get_image_for_user(request.user, pk)
    if (pk := _pk(data, "staged")) is not None:
        found["staged"] = selectors.get_input_image_for_user(request.user, pk)
    if (pk := _pk(data, "reuse")) is not None:
        found["reuse"] = selectors.get_generation_for_user(request.user, pk)
    if (pk := _pk(data, "extra_model")) is not None:
        found["extra_model"] = get_model_for_user(request.user, pk)
    return found


def _extra_choices(request: AuthenticatedHttpRequest, model: LoraModel | None, chosen: LoraModel | None):
    """The second-LoRA picker: the person's recent usable models of the same base but the first, and
    the chosen one."""
    models = [
        m
        for m in selectors.model_picker_choices(request.user)
        if model is None or (m.pk != model.pk and m.base_model == model.base_model)
    ]
    if chosen is not None and all(m.pk != chosen.pk for m in models):
        models.insert(0, chosen)
    return [(str(m.pk), f"{m.name} · {m.trigger_word}") for m in models]


def _start_image(inputs: dict) -> dict:
    """What the page shows as the image to start from (and the mask tool draws over)."""
    if inputs.get("source_image") is not None:
        image: GeneratedImage = inputs["source_image"]
        return {
            "url": storage.public_url(name=image.file_name),
            "width": image.width,
            "height": image.height,
            "label": "From your gallery",
        }
    if inputs.get("staged") is not None:
        staged: InputImage = inputs["staged"]
        return {
            "url": reverse("generations:input_image_file", args=[staged.pk]),
            "width": staged.width,
            "height": staged.height,
            "label": staged.label,
        }
    reuse: Generation | None = inputs.get("reuse")
    if reuse is not None and reuse.input_image_name:
        return {
            "url": reverse("generations:generation_input", args=[reuse.pk]),
            "width": reuse.params.get("input_width"),
            "height": reuse.params.get("input_height"),
            "label": "The image of the earlier generation",
            "mask_url": reverse("generations:generation_mask", args=[reuse.pk]) if reuse.mask_name else "",
        }
    return {}


def _generate_context(
    request: AuthenticatedHttpRequest,
    form: GenerateForm,
    model: LoraModel | None,
    *,
    picker: bool = True,
    inputs: dict | None = None,
    **extra,
) -> dict:
    """`picker=False` for the preview fragment, which shows no model list."""
    usable = _picker(request, model) if picker else []
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
        "model_ready": model is not None and selectors.model_is_usable(model),
        "suggestions": services.prompt_suggestions(model=model) if model else [],
        "effective_prompt": services.effective_prompt(prompt=prompt, model=model) if model else prompt,
        "prompt_has_trigger": model is not None
        and services.effective_prompt(prompt=prompt, model=model) == " ".join(prompt.split()),
        "cost": generation_cost_credits(num_images=num),
        "num_outputs": num,
        "balance": balance_for_user(request.user),
        "start_image": _start_image(inputs or {}),
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


def _again_form(
    request: AuthenticatedHttpRequest, generation: Generation, limits: dict, extra_choices: list
) -> GenerateForm:
    """The generate form prefilled from an earlier generation (same seed), with Replicate's refusals:
    its stored image and mask are reused, and its second LoRA chosen again."""
    initial = {"prompt": generation.prompt, **generation.params}
    initial.pop("extra_lora", None)
    if generation.input_image_name:
        initial["reuse"] = generation.pk
    if generation.extra_lora_model_id:
        initial["extra_model"] = generation.extra_lora_model_id
    form = GenerateForm(initial=initial, limits=limits, extra_choices=extra_choices)
    errors = services.generation.field_errors(generation=generation) if generation.invalid_fields else {}
    if errors:
        form = GenerateForm(
            data={k: "" if v is None else v for k, v in initial.items()},
            limits=limits,
            extra_choices=extra_choices,
        )
        form.is_valid()
        for field, messages_ in errors.items():
            for message in messages_:
                form.add_error(None if field == "__all__" else field, message)
    return form


@login_required
@require_http_methods(["GET", "POST"])
@rate_limited("generate")
def generate(request: AuthenticatedHtmxHttpRequest) -> HttpResponse:
    """The generate page; `?model=<pk>` preselects a model, `?again=<generation pk>` prefills everything,
    `?source_image=<image pk>` starts from one of the person's gallery images, `?staged=<pk>` from a
    dataset photo the training app handed over (generations.services.input_image_add)."""
    if request.method == "GET":
        if request.htmx and "model_q" in request.GET:  # the picker's search: its options only
            options = selectors.model_picker_choices(request.user, query=request.GET["model_q"])
            return render(request, f"{GENERATE}#model_options", {"usable_models": options, "model": None})
        model = _model_from_request(request, request.GET)
        inputs = _owned_inputs(request, request.GET)
        again = request.GET.get("again", "")
        if again.isdigit():
            generation = selectors.get_generation_for_user(request.user, int(again))
            model = model or generation.lora_model
            if generation.mode == Generation.Mode.UPSCALE and generation.source_image:
                # An upscale has no seed of its own: again means the settings of the image it enlarged.
                generation = generation.source_image.generation
            inputs["reuse"] = generation if generation.input_image_name else None
            inputs["extra_model"] = generation.extra_lora_model
            choices = _extra_choices(request, model, generation.extra_lora_model)
            form = _again_form(request, generation, _limits(model), choices)
        else:
            model = model or next(iter(selectors.models_for_generation(request.user)[:1]), None)
            initial = {
                name: inputs[name].pk
                for name in ("source_image", "staged", "reuse", "extra_model")
                if inputs[name]
            }
            # The strength its owner picked from the model's sample grid, if any.
            suggested = model.suggested_lora_scale if model is not None else None
            if suggested is not None:
                initial["lora_scale"] = suggested
            form = GenerateForm(
                initial=initial,
                limits=_limits(model),
                extra_choices=_extra_choices(request, model, inputs["extra_model"]),
            )
        return render(request, GENERATE, _generate_context(request, form, model, inputs=inputs))
    model = _model_from_request(request, request.POST)
    inputs = _owned_inputs(request, request.POST)
    form = GenerateForm(
        request.POST,
        request.FILES,
        limits=_limits(model),
        extra_choices=_extra_choices(request, model, inputs["extra_model"]),
    )
    if model is None:
        form.add_error(None, "Choose one of your models.")
    if model is not None and form.is_valid():  # without a model the form is already invalid
        try:
            generation = services.generation_start(
                user=request.user,
                model=model,
                prompt=form.cleaned_data["prompt"],
                params=form.params(),
                input_image=form.read(form.cleaned_data["input_image"]),
                source_image=inputs["source_image"],
                staged=inputs["staged"],
                mask=form.read(form.cleaned_data["mask"]),
                extra_model=inputs["extra_model"],
                reuse=inputs["reuse"],
            )
        except InsufficientCredits as exc:
            form.add_error(None, f"Not enough credits: {exc}")
        except services.GenerationError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("generations:generation", pk=generation.pk)
    return render(
        request,
        GENERATE,
        _generate_context(request, form, model, inputs=inputs),
        status=422 if request.htmx else 200,
    )


@login_required
@require_GET
def generate_preview(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The live preview fragment: the prompt as it will be sent, and the cost."""
    model = _model_from_request(request, request.GET)
    model = model or next(iter(selectors.models_for_generation(request.user)[:1]), None)
    form = GenerateForm(request.GET)
    return render(request, f"{GENERATE}#preview", _generate_context(request, form, model, picker=False))


def _generation_context(request: AuthenticatedHttpRequest, generation: Generation) -> dict:
    return {
        "generation": generation,
        "images": list(generation.images.order_by("index")),
        "refunded": generation.status in (Generation.Status.FAILED, Generation.Status.CANCELED),
    }


@login_required
@require_GET
def generation_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    generation = selectors.get_generation_for_user(request.user, pk)
    return render(request, GENERATION, _generation_context(request, generation))


@login_required
@require_GET
def generation_status(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The status fragment, polled while the images are made; HTTP 286 stops the polling."""
    generation = selectors.get_generation_for_user(request.user, pk)
    return polled(
        render(request, f"{GENERATION}#status", _generation_context(request, generation)),
        finished=generation.is_finished,
        credits_changed=True,
    )


@login_required
@require_POST
def generation_cancel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    generation = selectors.get_generation_for_user(request.user, pk)
    try:
        services.generation_cancel(generation=generation)
        messages.success(request, "Canceled. Your credits were refunded.")
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    except IntegrationError as exc:
        messages.error(request, f"Replicate did not accept the cancel: {exc.user_text}")
    return redirect("generations:generation", pk=generation.pk)


def _gallery_page(request: AuthenticatedHttpRequest, model: LoraModel | None) -> CursorPage:
    return cursor_page(
        selectors.images_for_user(request.user, model),
        ordering=selectors.IMAGE_ORDERING,
        cursor=request.GET.get(CURSOR_PARAM),
        per_page=GALLERY_PER_PAGE,
        target="gallery-tiles",
        label="Older images",
    )


@login_required
@require_GET
def gallery(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render_list(
        request, "generations/gallery.html", {"page": _gallery_page(request, None), "model": None}
    )


@login_required
@require_GET
def model_gallery(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    model = get_model_for_user(request.user, pk)
    return render_list(
        request, "generations/gallery.html", {"page": _gallery_page(request, model), "model": model}
    )


@login_required
@require_GET
def image_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    model = image.generation.lora_model
    return render(
        request,
        "generations/gallery_image.html",
        {
            "image": image,
            "generation": image.generation,
            "model": model,
            "is_cover": model is not None and model.cover_image_name == image.file_name,
            "upscales": selectors.upscales_of(image),
            "upscale_form": UpscaleForm(),
            "upscale_cost": upscale_cost_credits(num_images=1),
        },
    )


def _input_file(request: AuthenticatedHttpRequest, pk: int, which: str) -> StreamingHttpResponse:
    generation = selectors.get_generation_for_user(request.user, pk)
    name = generation.input_image_name if which == "input" else generation.mask_name
    if not name:
        raise Http404("This generation has no such image.")
    return _private_image(name)


def _private_image(name: str) -> StreamingHttpResponse:
    extension = name.rsplit(".", 1)[-1]
    content_type = {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png"}.get(
        extension, "application/octet-stream"
    )
    response = StreamingHttpResponse(
        storage.file_iter(alias=storage.PRIVATE, name=name), content_type=content_type
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def generation_input(request: AuthenticatedHttpRequest, pk: int) -> StreamingHttpResponse:
    """The image a generation started from (kept private), for its owner only."""
    return _input_file(request, pk, "input")


@login_required
@require_GET
def input_image_file(request: AuthenticatedHttpRequest, pk: int) -> StreamingHttpResponse:
    """An image kept to start from (a dataset photo), for its owner only."""
    return _private_image(selectors.get_input_image_for_user(request.user, pk).file_name)


@login_required
@require_GET
def generation_mask(request: AuthenticatedHttpRequest, pk: int) -> StreamingHttpResponse:
    """The inpainting mask of a generation, for its owner only."""
    return _input_file(request, pk, "mask")


@login_required
@require_POST
@rate_limited("generate")
def image_upscale(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Upscale one of the person's images: priced before it runs, kept beside the original."""
    image = selectors.get_image_for_user(request.user, pk)
    form = UpscaleForm(request.POST)
    if not form.is_valid():
        messages.error(
            request,
            "Choose how much to upscale: " + "; ".join(str(e) for errs in form.errors.values() for e in errs),
        )
        return redirect("generations:image", pk=image.pk)
    try:
        generation = services.generated_image_upscale(
            user=request.user,
            image=image,
            scale=form.cleaned_data["scale"],
            face_enhance=form.cleaned_data["face_enhance"],
        )
    except InsufficientCredits as exc:
        messages.error(request, f"Not enough credits: {exc}")
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    else:
        return redirect("generations:generation", pk=generation.pk)
    return redirect("generations:image", pk=image.pk)


@login_required
@require_GET
def compare(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Two to four of the person's images side by side with their settings (`?images=1&images=2`)."""
    form = CompareForm(request.GET)
    images: list[GeneratedImage] = []
    if form.is_valid():
        images = selectors.images_to_compare(request.user, form.cleaned_data["images"])
    return render(
        request,
        "generations/compare.html",
        {"form": form, "images": images},
        status=200 if images or not request.GET else 422,
    )


@login_required
@require_GET
def image_download(request: AuthenticatedHttpRequest, pk: int) -> StreamingHttpResponse:
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
def image_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    form = ImageDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        model_id = image.generation.lora_model_id
        services.generated_image_delete(image=image)
        messages.success(request, "The image was deleted.")
        return (
            redirect("generations:model_gallery", pk=model_id)
            if model_id
            else redirect("generations:gallery")
        )
    return render(request, "generations/gallery_image_delete.html", {"image": image, "form": form})


@login_required
@require_POST
def image_cover(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    image = selectors.get_image_for_user(request.user, pk)
    model = image.generation.lora_model
    if model is None:
        messages.error(request, "The model this image was made with no longer exists.")
        return redirect("generations:image", pk=image.pk)
    try:
        services.lora_set_cover(model=model, image=image)
        messages.success(request, f"This image is now the cover of “{model.name}”.")
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    return redirect("generations:image", pk=image.pk)
