"""The back office's pages, served by FluxsiteAdminSite (backoffice.site) behind its admin_view:
the overview on the admin index, and the support page of a user with its actions.

Thin, like every view: a form, one service, a template. Staff only (admin_view); the support page
needs the permission to view users, its actions the permission to change them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST

from backoffice import charts, selectors, services
from backoffice.forms import ACTIONS, SupportActionForm
from fluxsite.accounts.models import User
from training.models import TrainingJob

STATUS_SERIES = (
    (TrainingJob.Status.SUCCEEDED, "succeeded"),
    (TrainingJob.Status.FAILED, "failed"),
    (TrainingJob.Status.CANCELED, "canceled"),
)


def overview_context() -> dict[str, Any]:
    """The admin index's figures and their charts."""
    ov = selectors.overview()
    running = [
        sum(values[i] for status, values in ov.trainings.items() if status not in dict(STATUS_SERIES))
        for i in range(len(ov.days))
    ]
    training_series = [
        charts.Series(
            str(TrainingJob.Status(status).label), css, ov.trainings.get(status, [0] * len(ov.days))
        )
        for status, css in STATUS_SERIES
    ] + [charts.Series("running", "running", running)]
    return {
        "overview": ov,
        "trainings_svg": charts.stacked_bars_svg(
            "Trainings started per day, by outcome", ov.days, training_series
        ),
        "failures_svg": charts.share_bars_svg("Failed trainings by category", ov.failures),
        "money_svg": charts.lines_svg(
            "Replicate cost against revenue per day, in dollars",
            ov.days,
            [
                charts.Series("Replicate cost", "cost", [float(v) for v in ov.cost_dollars]),
                charts.Series("revenue", "revenue", [float(v) for v in ov.revenue_dollars]),
            ],
            prefix="$",
        ),
        "credits_svg": charts.lines_svg(
            "Credits granted and spent per day",
            ov.days,
            [
                charts.Series("credits granted", "granted", ov.granted),
                charts.Series("credits spent", "spent", ov.spent),
            ],
        ),
    }


def _user_or_404(user_id: int) -> User:
    try:
        return selectors.support_user_get(user_id=user_id)
    except User.DoesNotExist:
        raise Http404("No such user.")


@require_GET
def support(request: HttpRequest, user_id: int) -> HttpResponse:
    if not request.user.has_perm("accounts.view_user"):
        raise PermissionDenied
    user = _user_or_404(user_id)
    page = selectors.support_page(user=user)
    return TemplateResponse(
        request,
        "backoffice/support.html",
        {
            **admin.site.each_context(request),
            "title": f"Support: {user.email}",
            "subject": user,
            "page": page,
            "opts": User._meta,
            "can_act": request.user.has_perm("accounts.change_user"),
            "rows": selectors.SUPPORT_ROWS,
        },
    )


SERVICES: dict[str, Callable[..., str]] = {
    "training_cancel": lambda d, **kw: services.support_training_cancel(training_id=d["object_id"], **kw),
    "training_retry": lambda d, **kw: services.support_training_retry(training_id=d["object_id"], **kw),
    "credits_adjust": lambda d, **kw: services.support_credits_adjust(amount=d["amount"], **kw),
    "credits_refund": lambda d, **kw: services.support_credits_refund(entry_id=d["object_id"], **kw),
    "notification_resend": lambda d, **kw: services.support_notification_resend(**kw),
    "model_publish": lambda d, **kw: services.support_model_publish(model_id=d["object_id"], **kw),
    "webhook_replay": lambda d, **kw: services.support_webhook_replay(
        source=d["source"], record_id=d["object_id"], **kw
    ),
}


@require_POST
def support_action(request: HttpRequest, user_id: int, action: str) -> HttpResponse:
    """First POST: the confirmation page. The confirmed POST: the action, then back to the page."""
    if action not in ACTIONS:
        raise Http404("No such action.")
    if not request.user.has_perm("accounts.change_user"):
        raise PermissionDenied
    user = _user_or_404(user_id)
    form = SupportActionForm(request.POST, action=action)
    back = redirect("admin:accounts_user_support", user_id=user.pk)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")
        return back
    if not form.cleaned_data["confirmed"]:
        return TemplateResponse(
            request,
            "backoffice/confirm.html",
            {
                **admin.site.each_context(request),
                "title": "Are you sure?",
                "subject": user,
                "opts": User._meta,
                "action": action,
                "summary": form.summary(),
                "data": form.cleaned_data,
            },
        )
    actor = request.user
    assert isinstance(actor, User)
    try:
        done = SERVICES[action](form.cleaned_data, actor=actor, user=user, reason=form.cleaned_data["reason"])
    except services.SupportActionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return back
