"""Error reports (the admin e-mail, the DEBUG page) carry the exception but never a secret.

The view below is reached through this module's own URLconf (pytest.mark.urls): it raises while
the settings hold known secret values, with a token in a local variable, a DSN in another and the
token quoted in the exception message itself, the way a vendor's answer sometimes quotes a header.
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.reporting import SecretsExceptionReporterFilter

SECRETS = {
    "REPLICATE_API_TOKEN": "r8_KnownReplicateToken0123456789abcdef",
    "REPLICATE_WEBHOOK_SECRET": "whsec_S25vd25SZXBsaWNhdGVXZWJob29rU2VjcmV0",
    "HF_TOKEN": "hf_KnownHuggingFaceToken0123456789",
    "STRIPE_SECRET_KEY": "sk_live_KnownStripeSecretKey0123456789",
    "STRIPE_WEBHOOK_SECRET": "whsec_KnownStripeWebhookSecret0123",
    "SECRET_KEY": "known-django-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH",
    "S3_ACCESS_KEY_ID": "AKIAKNOWNACCESSKEY01",
    "S3_SECRET_ACCESS_KEY": "KnownS3SecretAccessKey/0123456789+abcdefgh",
    "EMAIL_HOST_PASSWORD": "known-smtp-password-0123",
}
FERNET_KEY = "dGhpcy1pcy1hLWtub3duLWZlcm5ldC1rZXktMDEyMzQ="
DB_PASSWORD = "known-db-p4ssword"
REDIS_PASSWORD = "known-redis-p4ssword"
SENTRY_KEY = "knownsentrypublickey0123"
DATABASE_URL = f"postgres://fluxsite:{DB_PASSWORD}@db.internal:5432/fluxsite"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0"
POSTED_PASSWORD = "known-posted-password-0123"
POSTED_TOKEN = "hf_KnownPostedToken0123456789"
ALL_SECRETS = [
    *SECRETS.values(),
    FERNET_KEY,
    DB_PASSWORD,
    REDIS_PASSWORD,
    SENTRY_KEY,
    POSTED_PASSWORD,
    POSTED_TOKEN,
]


@csrf_exempt
def boom(request: HttpRequest) -> HttpResponse:
    auth = f"Bearer {django_settings.REPLICATE_API_TOKEN}"  # noqa: F841 (a local the report would show)
    dsn = django_settings.DATABASE_URL  # noqa: F841
    raise RuntimeError(f"the vendor echoed our header back: Authorization: Bearer {django_settings.HF_TOKEN}")


urlpatterns = [path("boom/", boom)]


@pytest.fixture
def secret_settings(settings):
    for name, value in SECRETS.items():
        setattr(settings, name, value)
    settings.FIELD_ENCRYPTION_KEYS = [FERNET_KEY]
    settings.DATABASE_URL = DATABASE_URL
    settings.REDIS_URL = REDIS_URL
    settings.Q_CLUSTER = {**django_settings.Q_CLUSTER, "redis": REDIS_URL}
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": REDIS_URL}
    }
    settings.ERROR_TRACKING_DSN = f"https://{SENTRY_KEY}@o1.ingest.example.com/1"  # any DSN-like value
    settings.ADMINS = [("Operators", "ops@fluxsite.example.com")]
    settings.DEBUG = False
    return settings


def _leaks(text: str) -> list[str]:
    return [secret for secret in ALL_SECRETS if secret in text]


@pytest.mark.urls("tests.fluxsite.test_error_reports")
def test_the_admin_error_mail_holds_the_exception_but_no_secret(secret_settings, db):
    mail.outbox = []
    client = Client(raise_request_exception=False)
    response = client.post("/boom/", {"password": POSTED_PASSWORD, "hf_token": POSTED_TOKEN, "name": "Anna"})

    assert response.status_code == 500
    # Read mail.outbox itself: pytest-django's mailoutbox fixture can hold a list the locmem
    # backend has since replaced.
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    report = "\n".join(
        [
            str(sent.subject),
            str(sent.body),
            *(str(content) for content, _ in getattr(sent, "alternatives", [])),
        ]
    )
    print(sent.subject, sent.body[:1500], sep="\n")
    assert "RuntimeError" in sent.body
    assert "the vendor echoed our header back" in sent.body
    assert "Anna" in sent.body  # the harmless POST field is still there to debug with
    assert _leaks(report) == []


@pytest.mark.urls("tests.fluxsite.test_error_reports")
def test_the_debug_page_shows_locals_and_settings_without_a_secret(secret_settings, db):
    secret_settings.DEBUG = True
    client = Client(raise_request_exception=False)
    response = client.post("/boom/", {"password": POSTED_PASSWORD, "hf_token": POSTED_TOKEN})

    page = response.content.decode()
    assert response.status_code == 500
    assert "RuntimeError" in page and "ERROR_TRACKING_DSN" in page and "dsn" in page
    assert _leaks(page) == []


def test_settings_are_hidden_by_name_and_by_value_also_inside_dicts(secret_settings):
    secret_settings.STORAGES = {
        **django_settings.STORAGES,
        "backup": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "access_key": SECRETS["S3_ACCESS_KEY_ID"],
                "secret_key": SECRETS["S3_SECRET_ACCESS_KEY"],
                "endpoint_url": f"https://{SENTRY_KEY}:{DB_PASSWORD}@r2.example.com",
            },
        },
    }
    safe = SecretsExceptionReporterFilter().get_safe_settings()

    assert _leaks(repr(safe)) == []
    assert safe["DATABASE_URL"] == SecretsExceptionReporterFilter.cleansed_substitute
    assert safe["Q_CLUSTER"]["redis"] == "redis://********************@cache.internal:6379/0"
    assert safe["CACHES"]["default"]["LOCATION"].endswith("@cache.internal:6379/0")
    assert safe["STORAGES"]["backup"]["OPTIONS"]["endpoint_url"].endswith("@r2.example.com")
    assert safe["SITE_URL"] == django_settings.SITE_URL  # a URL without credentials is left alone


def test_a_vendor_error_never_carries_a_token_in_its_message_detail_or_invalid_fields(secret_settings):
    token = SECRETS["HF_TOKEN"]
    error = IntegrationError(
        service="huggingface",
        category=Category.VALIDATION,
        message=f"refused {token}",
        detail=f"401 for {token}",
        invalid_fields=[{"field": "token", "description": f"{token} is not allowed", "type": "value"}],
    )

    assert token not in error.message and token not in error.detail and token not in str(error)
    assert error.invalid_fields == [
        {"field": "token", "description": "[redacted] is not allowed", "type": "value"}
    ]


def test_log_lines_and_their_tracebacks_are_scrubbed_too(secret_settings):
    import logging
    import sys

    console = next(h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler)
    try:
        raise RuntimeError(f"connect to {DATABASE_URL} with {SECRETS['STRIPE_SECRET_KEY']}")
    except RuntimeError:
        record = logging.LogRecord(
            "billing", logging.ERROR, __file__, 1, "failed: %s", (SECRETS["HF_TOKEN"],), sys.exc_info()
        )
    line = console.format(record)
    assert "RuntimeError: connect to postgres://" in line and "@db.internal:5432/fluxsite" in line
    assert _leaks(line) == []
