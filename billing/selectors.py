from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing.models import (
    CheckoutRecord,
    CreditEntry,
    CreditKind,
    CreditPack,
    Plan,
    Subscription,
    SubscriptionStatus,
    Wallet,
)
from billing.pricing import generation_cost_credits, training_cost_credits, training_cost_dollars

if TYPE_CHECKING:  # the user model is a type here; billing sits below accounts (docs/architecture.md)
    from fluxsite.accounts.models import User


def price_list() -> dict:
    """What things cost and what is on sale, for the pricing page and the landing page: training
    examples by steps (credits and GPU dollars), an image's credits, the active packs and plans, the
    welcome credits and a credit's value in cents."""
    return {
        "packs": CreditPack.objects.filter(active=True),
        "plans": Plan.objects.filter(active=True),
        "training_examples": [
            {
                "steps": steps,
                "credits": training_cost_credits(steps=steps),
                "gpu_dollars": training_cost_dollars(steps=steps),
            }
            for steps in (500, 1000, 2000)
        ],
        "image_credits": generation_cost_credits(num_images=1),
        "signup_credits": settings.SIGNUP_CREDITS,
        "credit_value_cents": settings.CREDIT_VALUE_CENTS,
    }


def balance_for_user(user: User) -> int:
    """The user's balance as the wallet row holds it (0 when no wallet exists yet): what spending
    decisions and pages about money read."""
    return Wallet.objects.filter(user=user).values_list("balance", flat=True).first() or 0


BALANCE_SHOWN_SECONDS = 60


def balance_shown_key(user_id: int) -> str:
    return f"billing:balance-shown:{user_id}"


def balance_shown(user: User) -> int:
    """The balance the layout's pill shows on every page, from the cache (one cache get instead of
    a query). The ledger service (billing.services.ledger, the one writer of balances) deletes the
    entry when it writes and again when that write commits, so a page rendered after a spend or a
    purchase shows the new balance. `cache.add` never overwrites: a reader that read the old row
    just before a commit cannot put it back over a newer value. What is left (two writers' commit
    callbacks crossing) lasts at most BALANCE_SHOWN_SECONDS; the pill's own refresh
    (billing:balance_pill, on every credits-changed event) reads the row."""
    key = balance_shown_key(user.pk)
    cached = cache.get(key)
    if cached is None:
        cached = balance_for_user(user)
        cache.add(key, cached, BALANCE_SHOWN_SECONDS)
    return int(cached)


def balance_shown_forget(user_id: int) -> None:
    cache.delete(balance_shown_key(user_id))


def get_checkout_for_user(user: User, session_id: str) -> CheckoutRecord:
    """The user's own checkout; 404 (never 403) for anybody else's."""
    return get_object_or_404(
        CheckoutRecord.objects.select_related("pack", "plan"), user=user, session_id=session_id
    )


def subscription_for_user(user: User) -> Subscription | None:
    """The user's live subscription if any, else the most recent one."""
    subs = Subscription.objects.filter(user=user).select_related("plan")
    live = subs.filter(
        status__in=(SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE)
    ).first()
    return live or subs.first()


LEDGER_ORDERING = ("-created_at", "-id")


def ledger_for_user(user: User) -> QuerySet[CreditEntry]:
    return CreditEntry.objects.filter(wallet__user=user).order_by(*LEDGER_ORDERING)


def _try_reverse(name: str, pk: str) -> str:
    try:
        return reverse(name, args=[int(pk)])
    except (NoReverseMatch, ValueError):
        return ""


def entry_source(entry: CreditEntry) -> tuple[str, str]:
    """(label, url) of what caused an entry, read from its reference; url is "" when there is no page."""
    ref = entry.reference
    kind, _, rest = ref.partition(":")
    if ref.startswith("refund:"):
        label, url = entry_source(CreditEntry(reference=rest))
        return f"Refund of {label}", url
    if kind == "training":
        # "training:<pk>" for the first run, "training:<pk>:<run>" for a retry.
        pk = rest.partition(":")[0]
        return f"Training #{pk}", _try_reverse("training:detail", pk)
    if kind == "generation":
        return f"Generation #{rest}", _try_reverse("generations:generation", rest)
    if ref.startswith("stripe:checkout:"):
        return "Credit pack purchase", ""
    if ref.startswith("stripe:invoice:"):
        return f"Subscription invoice {ref.removeprefix('stripe:invoice:')}", ""
    if ref.startswith("stripe:charge:"):
        return "Refunded payment", ""
    if kind == "signup":
        return "Welcome credits", ""
    if kind == "adjustment":
        return "Adjustment by our team", ""
    return ref, ""


@dataclass(frozen=True)
class Bar:
    day: date
    credits: int
    x: int
    y: int
    width: int
    height: int


CHART_WIDTH = 600
CHART_HEIGHT = 120


def spend_by_day(user: User, *, days: int = 30, today: date | None = None) -> list[Bar]:
    """Credits spent per day over the last `days` days, laid out as SVG bars (no script, no styles)."""
    today = today or timezone.localdate()
    start = today - timedelta(days=days - 1)
    rows = (
        CreditEntry.objects.filter(
            wallet__user=user,
            kind__in=(CreditKind.SPEND_TRAINING, CreditKind.SPEND_GENERATION, CreditKind.SPEND_CAPTIONING),
            created_at__date__gte=start,
        )
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(total=Sum("amount"))
    )
    per_day = {row["day"]: -row["total"] for row in rows}
    peak = max(per_day.values(), default=0) or 1
    slot = CHART_WIDTH // days
    bars = []
    for i in range(days):
        day = start + timedelta(days=i)
        credits = per_day.get(day, 0)
        height = round(credits * (CHART_HEIGHT - 10) / peak)
        bars.append(
            Bar(
                day=day,
                credits=credits,
                x=i * slot + 1,
                y=CHART_HEIGHT - height,
                width=max(slot - 2, 1),
                height=height,
            )
        )
    return bars


# Each spend kind's reference namespace (its refunds are "refund:<spend reference>[:<part>]"), and
# whether a refund gives a whole job back (trainings, generations) or one part of it (a captioning
# batch refunds photo by photo, so a batch stays counted).
SPEND_KINDS = (
    (CreditKind.SPEND_TRAINING, "training:", True),
    (CreditKind.SPEND_GENERATION, "generation:", True),
    (CreditKind.SPEND_CAPTIONING, "caption-batch:", False),
)


def spend_summary(user: User) -> list[dict]:
    """Per spend kind: how many jobs, total and average credits (refunds netted out). Two queries a
    kind, whatever the number of entries (no list of references is sent back to the database)."""
    entries = CreditEntry.objects.filter(wallet__user=user)
    out = []
    for kind, prefix, whole in SPEND_KINDS:
        agg = entries.filter(kind=kind).aggregate(n=Count("id"), total=Sum("amount"))
        refunded = entries.filter(kind=CreditKind.REFUND, reference__startswith=f"refund:{prefix}").aggregate(
            n=Count("id"), total=Sum("amount")
        )
        count = (agg["n"] or 0) - ((refunded["n"] or 0) if whole else 0)
        total = -(agg["total"] or 0) - (refunded["total"] or 0)
        out.append(
            {
                "label": kind.label,
                "count": count,
                "total": total,
                "average": total // count if count > 0 else 0,
            }
        )
    return out
