"""The one error type every vendor module raises.

Modelled on healthchecks' TransportError(permanent=): callers need to know *what kind* of
failure happened (to show a hint and to decide about retrying), not which SDK raised it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    NETWORK = "network"
    AUTHENTICATION = "authentication"
    VALIDATION = "validation"
    RATE_LIMIT = "rate_limit"
    SERVICE_ERROR = "service_error"
    FILE_ERROR = "file_error"
    TIMEOUT = "timeout"


# What a person is told for each category, and whether retrying later can help by default.
HINTS: dict[Category, str] = {
    Category.NETWORK: "The service could not be reached. This is usually brief; it will be retried.",
    Category.AUTHENTICATION: "The service refused our credentials: an operator must update the API token.",
    Category.VALIDATION: "The service refused the request as invalid: check the settings and try again.",
    Category.RATE_LIMIT: "The service asked us to slow down. It will be retried shortly.",
    Category.SERVICE_ERROR: "The service had an internal problem. It will be retried; if it persists, try later.",
    Category.FILE_ERROR: "A file could not be read, downloaded or stored. Check the files and try again.",
    Category.TIMEOUT: "The service took too long to answer. It will be retried.",
}
RETRYABLE: dict[Category, bool] = {
    Category.NETWORK: True,
    Category.AUTHENTICATION: False,
    Category.VALIDATION: False,
    Category.RATE_LIMIT: True,
    Category.SERVICE_ERROR: True,
    Category.FILE_ERROR: False,
    Category.TIMEOUT: True,
}


@dataclass
class IntegrationError(Exception):
    """A failure talking to an external service.

    `message` is safe to show a user; `detail` is the vendor's text for the log (never shown,
    never containing a token); `retryable` says whether trying again later can help.
    """

    service: str
    category: Category
    message: str
    detail: str = ""
    status: int | None = None
    retryable: bool | None = None
    retry_after: float | None = None
    invalid_fields: list[dict] | None = None

    def __post_init__(self) -> None:
        if self.retryable is None:
            self.retryable = RETRYABLE[self.category]
        # Each vendor module redacts its own token; this catches what reaches us by another path
        # (a vendor echoing a header back in a validation message, invalid_fields' descriptions),
        # for every credential the settings hold, so a message, a detail for the log and the
        # invalid_fields stored on a Generation row never carry one.
        secrets = _configured_secrets()
        self.message = redact(self.message, *secrets)
        self.detail = redact(self.detail, *secrets)
        if self.invalid_fields:
            self.invalid_fields = [
                {
                    key: redact(value, *secrets) if isinstance(value, str) else value
                    for key, value in item.items()
                }
                if isinstance(item, dict)
                else item
                for item in self.invalid_fields
            ]
        super().__init__(self.message)

    @property
    def hint(self) -> str:
        return HINTS[self.category]

    @property
    def user_text(self) -> str:
        """What a page shows: the message, then what to do about it."""
        return f"{self.message} {self.hint}".strip()

    def __str__(self) -> str:
        return f"{self.service} {self.category}: {self.message}"


def category_for_status(status: int) -> Category:
    """Map an HTTP status from any vendor to a category (each vendor module may refine it)."""
    if status in (401, 403):
        return Category.AUTHENTICATION
    if status == 429:
        return Category.RATE_LIMIT
    if status in (408, 504):
        return Category.TIMEOUT
    if status >= 500:
        return Category.SERVICE_ERROR
    return Category.VALIDATION


# The settings whose values are credentials (the names also hidden in error reports).
SECRET_SETTINGS = (
    "REPLICATE_API_TOKEN",
    "REPLICATE_WEBHOOK_SECRET",
    "HF_TOKEN",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "SECRET_KEY",
    "EMAIL_HOST_PASSWORD",
)


def _configured_secrets() -> list[str]:
    from django.conf import settings

    if not settings.configured:
        return []
    values = [getattr(settings, name, "") or "" for name in SECRET_SETTINGS]
    values += list(getattr(settings, "FIELD_ENCRYPTION_KEYS", []) or [])
    # Longest first, so a secret containing another is replaced whole.
    return sorted((v for v in values if isinstance(v, str) and v), key=len, reverse=True)


def redact(text: str, *secrets: str) -> str:
    """Remove every secret from a text meant for a log or an error."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
