from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register("fluxsite", deploy=False)
def sandbox_requires_debug(app_configs, **kwargs) -> list[Error]:
    """The sandbox fakes payments and trainings: it must never run in production."""
    if settings.SANDBOX_MODE and not settings.DEBUG:
        return [
            Error(
                "SANDBOX_MODE is on while DEBUG is off.",
                hint="Set REPLICATE_API_TOKEN, HF_TOKEN and STRIPE_SECRET_KEY (and SANDBOX_MODE=false) in production.",
                id="fluxsite.E001",
            )
        ]
    return []
