from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditKind
from billing.services import credits_grant, wallet_create_for_new_user
from fluxsite.accounts.models import ApiToken, User, VerifiedAddress
from fluxsite.accounts.verification import (
    VerificationClaim,
    VerificationError,
    email_fingerprint,
    email_normalise,
    verification_state,
    verification_token_make,
    verification_token_read,
)

logger = logging.getLogger(__name__)

RESEND_INTERVAL_SECONDS = 60


def user_sign_up(*, email: str, password: str) -> User | None:
    """Create an unverified account with an empty wallet, and mail it a verification link.

    When the address already has an account nothing is created and None is returned; the
    owner gets an e-mail instead. The caller answers both cases the same way, so the sign-up
    form does not tell a stranger who has an account. Welcome credits come with verification
    (`user_email_verify`), never here. Mails go out after commit.
    """
    email = email.strip().lower()
    existing = User.objects.filter(email__iexact=email).first()
    if existing is None:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    user = User.objects.create_user(email=email, password=password)
            except IntegrityError:
                # A twin sign-up for the same address committed first: it is now an existing account.
                existing = User.objects.filter(email__iexact=email).first()
            else:
                wallet_create_for_new_user(user=user)
                _verification_mail(user=user, email=user.email)
                return user
    # Hash the password anyway: a new sign-up does, and the time taken must not tell the cases apart.
    make_password(password)
    if existing is not None:
        _mail_after_commit(to=existing.email, template="signup_taken", context={"email": existing.email})
    return None


def user_email_change_request(*, user: User, email: str) -> None:
    """Ask to move the account to `email`; nothing changes until the new address is verified.

    A free address gets a verification link; an address with another account gets nothing
    changed and its owner an e-mail. The caller answers both the same way.
    """
    email = email.strip().lower()
    if email == user.email.lower():
        if user.email_verified_at is None:
            _verification_mail(user=user, email=user.email)
        return
    owner = User.objects.filter(email__iexact=email).exclude(pk=user.pk).first()
    if owner is not None:
        _mail_after_commit(to=owner.email, template="change_taken", context={"email": owner.email})
        return
    _verification_mail(user=user, email=email)


ResendResult = Literal["sent", "too_soon", "already_verified"]


def user_verification_resend(*, user: User) -> ResendResult:
    """Mail a fresh link for the current address, at most once a minute per user."""
    if user.email_verified_at is not None:
        return "already_verified"
    # The time is kept in the value and compared with our clock, not left to the cache's expiry
    # (Redis expires by its own clock). cache.add is atomic: two quick first clicks send one mail.
    key = f"accounts:verify-resend:{user.pk}"
    now = timezone.now().timestamp()
    last = cache.get(key)
    if isinstance(last, int | float) and now - last < RESEND_INTERVAL_SECONDS:
        return "too_soon"
    if last is None and not cache.add(key, now, timeout=RESEND_INTERVAL_SECONDS * 10):
        return "too_soon"
    cache.set(key, now, timeout=RESEND_INTERVAL_SECONDS * 10)
    _verification_mail(user=user, email=user.email)
    return "sent"


@dataclass(frozen=True)
class VerificationOutcome:
    user: User
    email: str
    credits_granted: int
    email_changed: bool


def user_verification_check(*, token: str) -> VerificationClaim:
    """Read a link without using it (the confirm page). Raises VerificationError."""
    claim = verification_token_read(token)
    user = User.objects.filter(pk=claim.user_pk).first()
    if user is None:
        raise VerificationError("This verification link is not valid: its account no longer exists.")
    _refuse_a_used_claim(user, claim)
    return claim


def user_email_verify(*, token: str) -> VerificationOutcome:
    """Use a verification link: mark the address verified (switching to it for an e-mail change)
    and grant the welcome credits if this mailbox never brought any. Raises VerificationError.
    """
    claim = verification_token_read(token)
    with transaction.atomic():
        # The row lock makes "works once" hold for two clicks at the same moment.
        user = User.objects.select_for_update().filter(pk=claim.user_pk).first()
        if user is None:
            raise VerificationError("This verification link is not valid: its account no longer exists.")
        _refuse_a_used_claim(user, claim)
        return _email_confirm_locked(user=user, email=claim.email)


def user_email_confirm(*, user: User, email: str | None = None) -> VerificationOutcome:
    """Mark an address verified without a link (operators, the demo account); same grant rule."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        return _email_confirm_locked(user=locked, email=email or locked.email)


def _refuse_a_used_claim(user: User, claim: VerificationClaim) -> None:
    if verification_state(user) == claim.state:
        return
    if user.email_verified_at is not None and user.email.lower() == claim.email.lower():
        raise VerificationError("This address is already verified. There is nothing more to do.")
    raise VerificationError("This verification link was already used, or a newer one replaced it.")


def _email_confirm_locked(*, user: User, email: str) -> VerificationOutcome:
    now = timezone.now()
    changed = email.lower() != user.email.lower()
    taken = VerificationError("This address is now used by another account, so it cannot be moved to yours.")
    if changed:
        if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
            raise taken
        user.email = email
    user.email_verified_at = now
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "email_verified_at"])
    except IntegrityError:
        raise taken from None
    granted = _welcome_credits_grant(user=user, email=email, now=now)
    return VerificationOutcome(user=user, email=email, credits_granted=granted, email_changed=changed)


def _welcome_credits_grant(*, user: User, email: str, now) -> int:
    """Grant the welcome credits once per mailbox and once per account; return how many.

    Every verified mailbox is recorded, even one that brings nothing (an account that already
    had its welcome credits), so moving addresses around cannot free a mailbox for a new grant.
    """
    amount = settings.SIGNUP_CREDITS
    if VerifiedAddress.objects.filter(user=user, credits_granted__gt=0).exists():
        amount = 0
    try:
        # The unique normalised address is the race guard: a concurrent verification of the same
        # mailbox by another account waits on this insert and then fails it.
        with transaction.atomic():
            record = VerifiedAddress.objects.create(
                normalised=email_normalise(email),
                email=email,
                user=user,
                credits_granted=max(amount, 0),
                verified_at=now,
            )
    except IntegrityError:
        return 0
    if amount <= 0:
        return 0
    # The reference names the mailbox, not the account: the ledger's unique reference is a second
    # guard should the record above ever be deleted.
    result = credits_grant(
        user=user,
        amount=amount,
        reference=f"signup:{email_fingerprint(email)}",
        kind=CreditKind.SIGNUP,
        note="Welcome credits",
    )
    if not result.created:
        VerifiedAddress.objects.filter(pk=record.pk).update(credits_granted=0)
        return 0
    return amount


def _verification_mail(*, user: User, email: str) -> None:
    token = verification_token_make(user=user, email=email)
    _mail_after_commit(
        to=email,
        template="verify",
        context={
            "email": email,
            "link": f"{settings.SITE_URL}{reverse('accounts:verify', args=[token])}",
            "is_change": email.lower() != user.email.lower(),
            "credits": settings.SIGNUP_CREDITS,
            "days": max(1, settings.ACCOUNT_VERIFY_MAX_AGE_SECONDS // 86400),
        },
    )


def _mail_after_commit(*, to: str, template: str, context: dict) -> None:
    """Send after commit (no link to an account that was rolled back); a mail server failure is
    logged, not shown: the person can ask for a new link."""
    context = {"site_url": settings.SITE_URL, "credits": settings.SIGNUP_CREDITS, **context}
    subject = render_to_string(f"accounts/email/{template}_subject.txt", context).strip()
    body = render_to_string(f"accounts/email/{template}.txt", context)

    def send() -> None:
        send_mail(subject, body, None, [to])

    transaction.on_commit(send, robust=True)


# --- API tokens (the developer API, api/) ----------------------------------------------------------
API_TOKEN_PREFIX = "fx_"
API_TOKEN_MAX_ACTIVE = 20
API_TOKEN_TOUCH_SECONDS = 60  # last_used_at is written at most once a minute per token


class ApiTokenError(Exception):
    """A refused token action; the message is safe to show."""


def api_token_hash(secret: str) -> str:
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()


def api_token_create(*, user: User, name: str, scopes: list[str]) -> tuple[ApiToken, str]:
    """A new token and its secret (returned once, never stored in clear)."""
    import secrets

    name = " ".join(name.split())
    if not name:
        raise ApiTokenError("Name the token (e.g. the app that uses it).")
    valid = [scope for scope in ApiToken.Scope.values if scope in scopes]
    if not valid or len(valid) != len(set(scopes)):
        raise ApiTokenError("Choose at least one scope among read, train and generate.")
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        # Counted under the user's row lock: parallel requests cannot pass the limit together.
        User.objects.select_for_update().filter(pk=user.pk).first()
        if ApiToken.objects.filter(owner=user, revoked_at=None).count() >= API_TOKEN_MAX_ACTIVE:
            raise ApiTokenError(f"You have {API_TOKEN_MAX_ACTIVE} tokens, the most: revoke one first.")
        token = ApiToken.objects.create(
            owner=user,
            name=name[:60],
            prefix=secret[:8],
            last4=secret[-4:],
            secret_sha256=api_token_hash(secret),
            scopes=valid,
        )
    return token, secret


def api_token_revoke(*, user: User, token_id: int) -> bool:
    """Revoke the user's token (a compare-and-swap on revoked_at): True when this call revoked it,
    False when it already was. Another user's token is not found (Http404)."""
    from django.shortcuts import get_object_or_404

    get_object_or_404(ApiToken, pk=token_id, owner=user)
    return (
        ApiToken.objects.filter(pk=token_id, owner=user, revoked_at=None).update(revoked_at=timezone.now())
        == 1
    )


def api_token_authenticate(*, secret: str) -> ApiToken | None:
    """The active token with this secret (its owner joined), or None. Malformed secrets are not
    looked up. last_used_at is refreshed at most once a minute (no write on every request)."""
    import hmac

    if not secret.startswith(API_TOKEN_PREFIX) or not 20 <= len(secret) <= 100 or not secret.isascii():
        return None
    digest = api_token_hash(secret)
    token = (
        ApiToken.objects.select_related("owner")
        .filter(secret_sha256=digest, revoked_at=None, owner__is_active=True)
        .first()
    )
    if token is None or not hmac.compare_digest(token.secret_sha256, digest):
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > API_TOKEN_TOUCH_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
