"""Optional error reporting to Sentry, switched on by SENTRY_DSN; the only importer of sentry_sdk.

sentry-sdk is an optional dependency (`pip install -e '.[sentry]'`), imported only when a DSN is
set, from the end of settings.py. Every event goes through `event_scrub` first: the same secret
scrubbing as error mails and log lines (fluxsite.reporting), by name for keys (headers, frame
variables, extra data named like a secret) and by value everywhere else (a DSN's password, a token
quoted in an exception message). Personal data is not sent (the SDK's default, left as it is).

Docs: https://docs.sentry.io/platforms/python/integrations/django/ and
https://docs.sentry.io/platforms/python/configuration/filtering/#using-before-send
"""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured

from fluxsite.reporting import SUBSTITUTE, SecretsExceptionReporterFilter, scrub_text


def _scrub(value: Any, reporter_filter: SecretsExceptionReporterFilter, key: str = "") -> Any:
    if key and reporter_filter.hidden_settings.search(key) and isinstance(value, str | int | float):
        return SUBSTITUTE
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v, reporter_filter, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, reporter_filter) for v in value]
    return value


def event_scrub(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """before_send: the event with every secret replaced, as an error mail would show it."""
    return _scrub(event, SecretsExceptionReporterFilter())


def sentry_init(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> None:
    """Start the Sentry client (Django, logging of errors, django-q2 tasks' exceptions)."""
    try:
        import sentry_sdk
        from sentry_sdk.integrations.django import DjangoIntegration
    except ImportError:
        raise ImproperlyConfigured(
            "SENTRY_DSN is set but sentry-sdk is not installed: pip install -e '.[sentry]'."
        ) from None
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        traces_sample_rate=traces_sample_rate,
        integrations=[DjangoIntegration()],
        # cast: the SDK types events as its own TypedDict; ours is the plain dict it is at run time.
        before_send=cast(Any, event_scrub),
        before_send_transaction=cast(Any, event_scrub),
    )
