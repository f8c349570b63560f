from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from sandbox.faults import fault_clear, fault_inject
from sandbox.models import Fault, FaultKind


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "sandbox/index.html", {"faults": Fault.objects.all(), "kinds": FaultKind.choices})


@csrf_exempt  # a test and demo control endpoint, only mounted in sandbox mode (DEBUG on)
@require_http_methods(["GET", "POST", "DELETE"])
def faults(request: HttpRequest) -> HttpResponse:
    if request.method == "DELETE":
        fault_clear(service=request.GET.get("service") or None)
        return JsonResponse({"deleted": True})
    if request.method == "POST":
        try:
            body = json.loads(request.body or b"{}")
            fault = fault_inject(
                service=body["service"],
                operation=body.get("operation", "*"),
                kind=body.get("kind", "status"),
                status=body.get("status"),
                retry_after=body.get("retry_after"),
                delay_seconds=float(body.get("delay_seconds", 0)),
                times=body.get("times", 1),
            )
        except (KeyError, ValueError, TypeError) as exc:
            return JsonResponse({"error": f"bad fault: {exc}"}, status=400)
        return JsonResponse({"id": fault.pk, "fault": str(fault)}, status=201)
    return JsonResponse(
        {
            "faults": [
                {
                    "id": f.pk,
                    "service": f.service,
                    "operation": f.operation,
                    "kind": f.kind,
                    "status": f.status,
                    "remaining": f.remaining,
                }
                for f in Fault.objects.all()
            ]
        }
    )
