from __future__ import annotations

import logging
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fluxsite.htmx import polled
from fluxsite.http import AuthenticatedHtmxHttpRequest, AuthenticatedHttpRequest
from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.pagination import CURSOR_PARAM, cursor_page, render_list
from models_app import selectors, services
from models_app.forms import DeleteForm, HfAccountForm, RenameForm, SuggestedScaleForm, VisibilityForm
from models_app.models import LoraModel

logger = logging.getLogger(__name__)

DETAIL = "models_app/detail.html"
LIST_PER_PAGE = 24


@login_required
@require_GET
def model_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    page = cursor_page(
        selectors.model_list_for_user(request.user),
        ordering=selectors.CARD_ORDERING,
        cursor=request.GET.get(CURSOR_PARAM),
        per_page=LIST_PER_PAGE,
        target="model-cards",
        label="More models",
    )
    return render_list(
        request, "models_app/list.html", {"page": page, "cards": selectors.model_cards(page.object_list)}
    )


def _detail_context(request: AuthenticatedHttpRequest, model: LoraModel, **extra) -> dict:
    return {
        "model": model,
        "recent_images": selectors.model_showcase(model),
        "grid": selectors.model_sample_grid(model),
        "suggest_url": reverse("models_app:suggest_scale", args=[model.pk]),
        # While images are being made the grid refreshes itself (it stops once none is pending).
        "poll_url": reverse("models_app:sample_grid", args=[model.pk]),
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
def model_sample_grid(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The model page's sample grid fragment, polled while its images are being made; 286 once
    none is left, so the page shows each picture as it arrives instead of "Queued" until a reload."""
    model = selectors.get_model_for_user(request.user, pk)
    grid = selectors.model_sample_grid(model)
    context = {
        "grid": grid,
        "suggest_url": reverse("models_app:suggest_scale", args=[model.pk]),
        "poll_url": reverse("models_app:sample_grid", args=[model.pk]),
    }
    return polled(
        render(request, "partials/_sample_grid.html", context), finished=not (grid and grid["pending"])
    )


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
def model_suggest_scale(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Keep the strength the owner picked from the sample grid: the generate page's default."""
    model = selectors.get_model_for_user(request.user, pk)
    form = SuggestedScaleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick one of the strengths the sample grid shows.")
        return redirect("models_app:detail", pk=model.pk)
    try:
        services.lora_suggested_scale_set(model=model, lora_scale=form.cleaned_data["lora_scale"])
    except services.LoraStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Strength {form.cleaned_data['lora_scale']} is now this model's default.")
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
