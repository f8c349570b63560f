from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.models import CreditEntry


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    entries = CreditEntry.objects.filter(wallet__user=request.user).order_by("-created_at", "-id")
    page = Paginator(entries, 25).get_page(request.GET.get("page"))
    return render(request, "billing/overview.html", {"page": page})


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/pricing.html", {})
