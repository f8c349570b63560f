"""A user's own Hugging Face account: the token is checked, then kept encrypted (Fernet).

The keys are settings.FIELD_ENCRYPTION_KEYS (Fernet keys, required when DEBUG is off): the first
encrypts, every one decrypts (MultiFernet), so a key is rotated by putting a new one first and
re-encrypting with `token_rotate`. A token no key can read asks the user to connect again (never
a crash).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from fluxsite.accounts.models import User
from fluxsite.integrations import huggingface_client as hf
from fluxsite.integrations.errors import Category, IntegrationError
from models_app.models import HuggingFaceAccount


def _fernet() -> MultiFernet:
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        if not (settings.DEBUG or settings.SANDBOX_MODE):
            # settings.py refuses this already; a settings override must not quietly fall back.
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off.")
        # Local development and the sandbox only: a key derived from SECRET_KEY, so a laptop needs no
        # setup. Never in production, where rotating SECRET_KEY would make every stored token unreadable.
        digest = hashlib.sha256(b"fluxsite.hf-token:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)."
        )


def token_encrypt(token: str) -> str:
    return _fernet().encrypt(token.encode()).decode()


def token_rotate(encrypted: str) -> str:
    """The same token encrypted with the first key; raises InvalidToken when no key can read it."""
    return _fernet().rotate(encrypted.encode()).decode()


def token_decrypt(encrypted: str) -> str:
    try:
        return _fernet().decrypt(encrypted.encode()).decode()
    except InvalidToken:
        raise IntegrationError(
            service="huggingface",
            category=Category.AUTHENTICATION,
            message="Your Hugging Face token can no longer be read: connect your account again.",
        )


def _check_writer(token: str) -> hf.HfIdentity:
    identity = hf.whoami(token=token)
    if not identity.can_write:
        raise IntegrationError(
            service="huggingface",
            category=Category.AUTHENTICATION,
            message="This Hugging Face token is read-only: create one with write access.",
        )
    return identity


def hf_account_connect(*, user: User, token: str) -> HuggingFaceAccount:
    """Check the token with whoami (it must be able to write), then store it encrypted.

    Raises IntegrationError (authentication for a bad or read-only token) and stores nothing then.
    """
    token = token.strip()
    identity = _check_writer(token)
    account, _ = HuggingFaceAccount.objects.update_or_create(
        user=user,
        defaults={
            "username": identity.name,
            "token_encrypted": token_encrypt(token),
            "token_last4": token[-4:],
            "checked_at": timezone.now(),
        },
    )
    return account


def hf_account_disconnect(*, user: User) -> None:
    HuggingFaceAccount.objects.filter(user=user).delete()


def hf_account_token_for_use(*, user: User) -> tuple[str, str]:
    """The user's (username, token), checked again with whoami: a token can be revoked any time.

    Raises IntegrationError(authentication) when there is no account, or its token fails.
    """
    account = HuggingFaceAccount.objects.filter(user=user).first()
    if account is None:
        raise IntegrationError(
            service="huggingface",
            category=Category.AUTHENTICATION,
            message="This model was published with your Hugging Face account, "
            "which is no longer connected: connect it again.",
        )
    token = token_decrypt(account.token_encrypted)
    identity = _check_writer(token)
    HuggingFaceAccount.objects.filter(pk=account.pk).update(checked_at=timezone.now(), username=identity.name)
    return identity.name, token
