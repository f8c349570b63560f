from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

# Imported here, at app start-up, so its sign-in receiver is connected before the first login.
from fluxsite import middleware  # noqa: F401


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


@register("fluxsite", deploy=True)
def webhook_secrets_set(app_configs, **kwargs) -> list[Error]:
    """Without its signing secret a webhook cannot be verified: every delivery would be lost."""
    if settings.DEBUG:
        return []
    missing = [
        name
        for name in ("REPLICATE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET")
        if not getattr(settings, name, "")
    ]
    if not missing:
        return []
    return [
        Error(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set.",
            hint="Copy the signing secret from the vendor's webhook settings (see .env.example); until then "
            "the webhook answers 503 and the vendor keeps retrying.",
            id="fluxsite.E002",
        )
    ]
