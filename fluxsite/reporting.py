"""Error reports (the admin e-mail, the DEBUG page) that never carry a secret.

Django's SafeExceptionReporterFilter hides settings by *name* (API, KEY, TOKEN, SECRET, PASS...).
That misses two things this project has: URLs with credentials inside (DATABASE_URL, REDIS_URL,
Q_CLUSTER["redis"], CACHES' LOCATION, any DSN-like value `scheme://user:pass@host`), and secret
*values* that reach a report under an innocent name (a local variable `auth` or `headers` in a
client function, an exception message quoting a vendor's answer). So the filter also hides by
value, and the reporter scrubs its finished text as a last line of defence.

Wired by settings.DEFAULT_EXCEPTION_REPORTER_FILTER and DEFAULT_EXCEPTION_REPORTER; log lines go
through SecretsFormatter (settings.LOGGING).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# `scheme://userinfo@`: the userinfo of a URL (user, password, or a bare token) is a credential.
_DSN_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/@'\"<>]+)@")
# POST fields whose name says they hold a credential, even on a view someone forgot to decorate
# with sensitive_post_parameters.
_SENSITIVE_POST = re.compile(r"pass|token|secret|key|otp|card|cvc", flags=re.IGNORECASE)
# Shorter values are too likely to appear by chance ("auto", "true") to be replaced everywhere.
_MIN_SECRET_LENGTH = 6
SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute
_secret_values_cache: list[str] | None = None


@receiver(setting_changed)
def _forget_secret_values(**kwargs: Any) -> None:
    global _secret_values_cache
    _secret_values_cache = None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield str(value)  # a lazy string (django-axes' username field) passes isinstance but not re
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def _dsn_passwords(text: str) -> Iterable[str]:
    for match in _DSN_CREDENTIALS.finditer(text):
        userinfo = match.group("userinfo")
        yield userinfo
        yield from (part for part in userinfo.split(":")[1:] if part)


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hide secret settings by name (also deep in dicts) and by value, everywhere in a report."""

    hidden_settings = re.compile(
        r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|DSN|DATABASE_URL|REDIS_URL",
        flags=re.IGNORECASE,
    )

    def secret_values(self) -> list[str]:
        """Every secret the settings hold: values under a hidden name, and passwords inside URLs.

        Longest first, so a secret that contains another is replaced whole. Worked out once and
        kept until a setting changes (tests override settings; production never does): a report
        scrubs every setting and every frame variable with it.
        """
        global _secret_values_cache
        if _secret_values_cache is not None:
            return _secret_values_cache
        found: set[str] = set()

        def walk(key: str, value: Any) -> None:
            if isinstance(value, dict):
                for inner_key, inner in value.items():
                    walk(str(inner_key), inner)
                return
            for text in _strings(value):
                if self.hidden_settings.search(key):
                    found.add(text)
                found.update(_dsn_passwords(text))

        for name in dir(settings):
            if name.isupper():
                walk(name, getattr(settings, name, None))
        _secret_values_cache = sorted(
            (s for s in found if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True
        )
        return _secret_values_cache

    def scrub(self, text: str) -> str:
        """The text with credentials in URLs and every known secret value replaced."""
        text = _DSN_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{SUBSTITUTE}@", text)
        for secret in self.secret_values():
            text = text.replace(secret, SUBSTITUTE)
            escaped = html.escape(secret)
            if escaped != secret:
                text = text.replace(escaped, SUBSTITUTE)
        return text

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # The parent replaces a hidden name and recurses into dicts, lists and tuples through this
        # method, so nested values (DATABASES, CACHES, Q_CLUSTER, STORAGES' OPTIONS) come here too.
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str) and cleansed != SUBSTITUTE:
            return self.scrub(str(cleansed))  # str(): a lazy string passes isinstance but not re
        return cleansed

    def get_post_parameters(self, request):
        cleansed = super().get_post_parameters(request)
        if request is None or not hasattr(cleansed, "copy"):
            return cleansed
        cleansed = cleansed.copy()
        for name in list(cleansed):
            if _SENSITIVE_POST.search(name):
                cleansed[name] = SUBSTITUTE
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if value != SUBSTITUTE and self.hidden_settings.search(str(name)) and isinstance(value, str):
                # A local named `token` or `api_key` is a secret whatever its value.
                value = SUBSTITUTE
            else:
                try:
                    shown = repr(value)
                except Exception:  # a broken __repr__ must not break the report
                    shown = ""
                if self.scrub(shown) != shown:
                    value = SUBSTITUTE
            cleansed.append((name, value))
        return cleansed


class SecretsExceptionReporter(ExceptionReporter):
    """The last line of defence: the finished report (exception messages included) is scrubbed."""

    def _scrub(self, text: str) -> str:
        reporter_filter = self.filter
        if isinstance(reporter_filter, SecretsExceptionReporterFilter):
            return reporter_filter.scrub(text)
        return SecretsExceptionReporterFilter().scrub(text)

    def get_traceback_html(self):
        return self._scrub(str(super().get_traceback_html()))

    def get_traceback_text(self):
        return self._scrub(str(super().get_traceback_text()))


class SecretsFormatter(logging.Formatter):
    """Log lines (tracebacks included) with credentials in URLs and known secret values replaced.

    A vendor error quoting our Authorization header, or a DSN in a connection error, would
    otherwise reach the log aggregator.
    """

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a handler without fluxsite.logs.RequestIdFilter
            from fluxsite.logs import RequestIdFilter

            RequestIdFilter().filter(record)
        return scrub_text(super().format(record))


def scrub_text(text: str) -> str:
    """`text` with credentials in URLs and known secret values replaced (log lines, Sentry events)."""
    try:
        return SecretsExceptionReporterFilter().scrub(text)
    except Exception:  # settings not loaded yet (very early start-up): scrub URLs only
        return _DSN_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{SUBSTITUTE}@", text)
