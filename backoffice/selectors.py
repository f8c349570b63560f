"""Reads of the back office: the admin index's overview and a user's support page.

The overview costs the same handful of aggregate queries whatever the number of rows (each chart is
one GROUP BY over the window, summed by day in the database); tests/backoffice pins the count.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import CreditEntry, CreditKind, StripeEvent, Subscription, SubscriptionStatus, Wallet
from billing.services import SPEND_KINDS
from fluxsite.accounts.models import User
from generations.models import Generation
from models_app.models import LoraModel
from training.models import ReplicateWebhook, TrainingJob
from training.trainers.registry import UnknownTrainer, trainer_get

OVERVIEW_DAYS = 30
S = TrainingJob.Status
FINISHED = (S.SUCCEEDED, S.FAILED, S.CANCELED)
ACTIVE_SUBSCRIPTION = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE)
# Credits that come in from outside the ledger's own give-and-take (refunds are spends given back).
GRANT_KINDS = (
    CreditKind.GRANT,
    CreditKind.SIGNUP,
    CreditKind.PURCHASE,
    CreditKind.SUBSCRIPTION,
    CreditKind.ADJUSTMENT,
)
REVENUE_KINDS = (CreditKind.PURCHASE, CreditKind.SUBSCRIPTION)


@dataclass
class Overview:
    days: list[date]
    # Trainings started per day, by how they stand now.
    trainings: dict[str, list[int]]
    # Trainings finished in the window: (failure category, failed, finished), worst first.
    failures: list[tuple[str, int, int]]
    finished: int
    failed: int
    cost_dollars: list[Decimal]  # Replicate's GPU seconds of the trainings finished that day × their price
    revenue_dollars: list[Decimal]  # Stripe purchases and subscription invoices paid that day (USD)
    other_currencies: dict[str, int]  # revenue in minor units of any other currency (not charted)
    subscriptions: list[tuple[str, int]]  # active subscriptions by plan
    granted: list[int]
    spent: list[int]  # net of refunds
    totals: dict[str, Any] = field(default_factory=dict)


def _window(now: datetime | None, days: int) -> tuple[list[date], datetime]:
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    return [first + timedelta(days=i) for i in range(days)], since


def _price_per_second(trainer: str) -> Decimal:
    try:
        return Decimal(getattr(settings, trainer_get(trainer).price_setting))
    except UnknownTrainer:
        return Decimal(settings.GPU_PRICE_PER_SECOND)  # a trainer since removed: the default hardware


def overview(*, now: datetime | None = None, days: int = OVERVIEW_DAYS) -> Overview:
    """The admin index's figures over the last `days` days (today included). Six queries."""
    day_list, since = _window(now, days)
    index = {d: i for i, d in enumerate(day_list)}

    def zeros() -> list[Any]:
        return [0] * len(day_list)

    # 1. Trainings started per day, by status. order_by() clears the model's ordering from GROUP BY.
    trainings: dict[str, list[int]] = defaultdict(zeros)
    for row in (
        TrainingJob.objects.filter(created_at__gte=since)
        .exclude(status=S.DRAFT)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if row["day"] in index:
            trainings[row["status"]][index[row["day"]]] += row["n"]

    # 2. Trainings finished in the window, by outcome and failure category.
    failed_by_category: dict[str, int] = defaultdict(int)
    finished = 0
    for row in (
        TrainingJob.objects.filter(finished_at__gte=since, status__in=FINISHED)
        .values("status", "error_category")
        .annotate(n=Count("id"))
        .order_by()
    ):
        finished += row["n"]
        if row["status"] == S.FAILED:
            failed_by_category[row["error_category"] or "uncategorised"] += row["n"]
    failures = sorted(((c, n, finished) for c, n in failed_by_category.items()), key=lambda r: (-r[1], r[0]))

    # 3. Replicate's cost: billed GPU seconds of the trainings finished each day, priced per trainer.
    cost = [Decimal("0")] * len(day_list)
    for row in (
        TrainingJob.objects.filter(finished_at__gte=since, predict_time__isnull=False)
        .annotate(day=TruncDate("finished_at"))
        .values("day", "trainer")
        .annotate(seconds=Sum("predict_time"))
        .order_by()
    ):
        if row["day"] in index:
            dollars = Decimal(str(row["seconds"])) * _price_per_second(row["trainer"])
            cost[index[row["day"]]] += dollars.quantize(Decimal("0.01"))

    # 4. Revenue: what the ledger's purchases and subscription grants say was paid, by day and currency.
    revenue = [Decimal("0")] * len(day_list)
    other: dict[str, int] = defaultdict(int)
    for row in (
        CreditEntry.objects.filter(created_at__gte=since, kind__in=REVENUE_KINDS, amount_cents__isnull=False)
        .annotate(day=TruncDate("created_at"))
        .values("day", "currency")
        .annotate(cents=Sum("amount_cents"))
        .order_by()
    ):
        if (row["currency"] or "usd").lower() == "usd":
            if row["day"] in index:
                revenue[index[row["day"]]] += Decimal(row["cents"]) / 100
        else:
            other[row["currency"].lower()] += row["cents"]

    # 5. Active subscriptions by plan.
    subscriptions = [
        (row["plan__name"] or "(no plan)", row["n"])
        for row in Subscription.objects.filter(status__in=ACTIVE_SUBSCRIPTION)
        .values("plan__name")
        .annotate(n=Count("id"))
        .order_by("-n", "plan__name")
    ]

    # 6. Credits granted and spent per day (spends net of their refunds).
    granted, spent = zeros(), zeros()
    for row in (
        CreditEntry.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "kind")
        .annotate(plus=Sum("amount", filter=Q(amount__gt=0)), minus=Sum("amount", filter=Q(amount__lt=0)))
        .order_by()
    ):
        i = index.get(row["day"])
        if i is None:
            continue
        if row["kind"] in GRANT_KINDS:
            granted[i] += row["plus"] or 0
        elif row["kind"] in SPEND_KINDS:
            spent[i] -= row["minus"] or 0
        elif row["kind"] == CreditKind.REFUND:
            spent[i] -= row["plus"] or 0

    failed = sum(n for _, n, _ in failures)
    return Overview(
        days=day_list,
        trainings=dict(trainings),
        failures=failures,
        finished=finished,
        failed=failed,
        cost_dollars=cost,
        revenue_dollars=revenue,
        other_currencies=dict(other),
        subscriptions=subscriptions,
        granted=granted,
        spent=spent,
        totals={
            "trainings": sum(sum(v) for v in trainings.values()),
            "failure_rate": (failed * 100 / finished) if finished else None,
            "cost": sum(cost, Decimal("0")),
            "revenue": sum(revenue, Decimal("0")),
            "subscriptions": sum(n for _, n in subscriptions),
            "granted": sum(granted),
            "spent": sum(spent),
        },
    )


# --- Support ----------------------------------------------------------------------------------------
SUPPORT_ROWS = 20  # of each list on the support page; the rest are a link to the admin's list


@dataclass
class Support:
    user: User
    balance: int
    wallet_id: int | None
    trainings: list[TrainingJob]
    models: list[LoraModel]
    generations: list[Generation]
    ledger: list[CreditEntry]
    replicate_webhooks: list[ReplicateWebhook]
    stripe_events: list[StripeEvent]
    last_notified: TrainingJob | None
    log: list[LogEntry]


def support_user_get(*, user_id: int) -> User:
    """The user of a support page, with their wallet and Stripe customer; raises User.DoesNotExist."""
    return User.objects.select_related("wallet", "stripe_customer").get(pk=user_id)


def replicate_webhooks_for_user(*, user: User) -> QuerySet[ReplicateWebhook]:
    """Replicate's deliveries about the user's trainings and generations (matched on Replicate's id)."""
    training_ids = TrainingJob.objects.filter(owner=user).exclude(replicate_training_id="")
    prediction_ids = Generation.objects.filter(owner=user).exclude(replicate_prediction_id="")
    return ReplicateWebhook.objects.filter(
        Q(kind="training", replicate_id__in=training_ids.values("replicate_training_id"))
        | Q(kind="prediction", replicate_id__in=prediction_ids.values("replicate_prediction_id"))
    ).order_by("-received_at", "-pk")


def stripe_events_for_user(*, user: User) -> QuerySet[StripeEvent]:
    """Stripe's events naming the user: our metadata or client_reference_id, or their customer id."""
    match = Q(payload__data__object__client_reference_id=str(user.pk)) | Q(
        payload__data__object__metadata__user_id=str(user.pk)
    )
    customer = getattr(user, "stripe_customer", None)
    if customer is not None:
        match |= Q(payload__data__object__customer=customer.customer_id)
    return StripeEvent.objects.filter(match).order_by("-received_at", "-pk")


def last_notified_training(*, user: User) -> TrainingJob | None:
    """The training whose end was the user's last notification e-mail (training_notify sends one
    for each training that succeeds or fails)."""
    return (
        TrainingJob.objects.filter(owner=user, status__in=(S.SUCCEEDED, S.FAILED), finished_at__isnull=False)
        .order_by("-finished_at", "-pk")
        .first()
    )


def support_page(*, user: User, rows: int = SUPPORT_ROWS) -> Support:
    """Everything the support page shows of one user, the newest `rows` of each list."""
    wallet = getattr(user, "wallet", None)
    try:
        wallet = Wallet.objects.get(user=user) if wallet is None else wallet
    except Wallet.DoesNotExist:
        wallet = None
    return Support(
        user=user,
        balance=wallet.balance if wallet else 0,
        wallet_id=wallet.pk if wallet else None,
        trainings=list(TrainingJob.objects.filter(owner=user).order_by("-created_at", "-pk")[:rows]),
        models=list(LoraModel.objects.filter(owner=user).order_by("-created_at", "-pk")[:rows]),
        generations=list(Generation.objects.filter(owner=user).order_by("-created_at", "-pk")[:rows]),
        ledger=list(CreditEntry.objects.filter(wallet=wallet).order_by("-created_at", "-pk")[:rows])
        if wallet
        else [],
        replicate_webhooks=list(replicate_webhooks_for_user(user=user)[:rows]),
        stripe_events=list(stripe_events_for_user(user=user)[:rows]),
        last_notified=last_notified_training(user=user),
        log=list(
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(User), object_id=str(user.pk)
            )
            .select_related("user")
            .order_by("-action_time")[:rows]
        ),
    )
