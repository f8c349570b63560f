"""E-mail verification links and address normalisation.

A link carries a signed, timestamped payload: the user's pk, the address it proves, and the
user's verification state when it was made. Verifying changes that state, so a link works once
(and every older link of the same user stops working), with no token table to clean up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing

if TYPE_CHECKING:
    from fluxsite.accounts.models import User

SALT = "fluxsite.accounts.email-verification"

# Providers that deliver jane.doe@ and janedoe@ to the same mailbox; googlemail.com is gmail.com.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


class VerificationError(Exception):
    """A link that cannot be used; `message` is safe to show."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class VerificationClaim:
    user_pk: int
    email: str
    state: str


def email_normalise(address: str) -> str:
    """The mailbox an address reaches: lower case, no `+tag`, no dots in a Gmail local part."""
    local, _, domain = address.strip().lower().rpartition("@")
    domain = domain.rstrip(".")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "")
        domain = DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"


def email_fingerprint(address: str) -> str:
    """A stable hash of the normalised address, for ledger references (no address in the ledger)."""
    return hashlib.sha256(email_normalise(address).encode()).hexdigest()[:40]


def verification_state(user: User) -> str:
    """Changes whenever a verification succeeds, which is what retires older links."""
    return user.email_verified_at.isoformat() if user.email_verified_at else ""


def verification_token_make(*, user: User, email: str) -> str:
    return signing.dumps({"u": user.pk, "e": email, "s": verification_state(user)}, salt=SALT, compress=True)


def verification_token_read(token: str) -> VerificationClaim:
    """Raises VerificationError for an expired, tampered or malformed token."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.ACCOUNT_VERIFY_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise VerificationError(
            "This verification link has expired. Log in and ask for a new one from your account page."
        ) from None
    except signing.BadSignature:
        raise VerificationError(
            "This verification link is not valid. Check that you copied all of it."
        ) from None
    try:
        return VerificationClaim(user_pk=int(data["u"]), email=str(data["e"]), state=str(data["s"]))
    except (KeyError, TypeError, ValueError):
        raise VerificationError(
            "This verification link is not valid. Check that you copied all of it."
        ) from None
