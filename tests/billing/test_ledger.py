from __future__ import annotations

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, transaction

from billing.models import CreditEntry, CreditKind, Wallet
from billing.services import (
    InsufficientCredits,
    credits_adjust,
    credits_grant,
    credits_refund,
    credits_spend,
    credits_take_back,
    wallets_check,
)
from tests.helpers import balance, run_concurrently


def test_sign_up_grants_the_welcome_credits_once(alice, settings):
    assert balance(alice) == settings.SIGNUP_CREDITS
    assert CreditEntry.objects.filter(wallet__user=alice, kind=CreditKind.SIGNUP).count() == 1


def test_a_grant_with_the_same_reference_twice_adds_once(alice):
    start = balance(alice)
    first = credits_grant(user=alice, amount=100, reference="test:grant:1")
    second = credits_grant(user=alice, amount=100, reference="test:grant:1")
    assert first.created and not second.created
    assert balance(alice) == start + 100


def test_it_refuses_a_spend_over_the_balance(alice):
    start = balance(alice)
    with pytest.raises(InsufficientCredits) as info:
        credits_spend(user=alice, amount=start + 1, reference="training:1", kind=CreditKind.SPEND_TRAINING)
    assert "needs" in str(info.value) and str(start) in str(info.value)
    assert balance(alice) == start
    assert not CreditEntry.objects.filter(reference="training:1").exists()


def test_a_spend_is_refunded_at_most_once(alice):
    start = balance(alice)
    credits_spend(user=alice, amount=40, reference="generation:7", kind=CreditKind.SPEND_GENERATION)
    first, again = (
        credits_refund(spend_reference="generation:7"),
        credits_refund(spend_reference="generation:7"),
    )
    assert first and first.created
    assert again and not again.created
    assert balance(alice) == start
    assert credits_refund(spend_reference="generation:unknown") is None


def test_a_refund_cannot_give_back_a_grant(alice):
    credits_grant(user=alice, amount=5, reference="test:grant:x")
    assert credits_refund(spend_reference="test:grant:x") is None


def test_the_database_refuses_a_negative_balance(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(user=alice).update(balance=-1)


def test_take_back_takes_what_is_left_and_records_the_shortfall(alice):
    credits_spend(
        user=alice, amount=balance(alice) - 30, reference="training:2", kind=CreditKind.SPEND_TRAINING
    )
    result = credits_take_back(user=alice, amount=100, reference="stripe:charge:ch_1:refunded:1000")
    assert result.entry.amount == -30 and result.entry.shortfall == 70
    assert balance(alice) == 0
    again = credits_take_back(user=alice, amount=100, reference="stripe:charge:ch_1:refunded:1000")
    assert not again.created and balance(alice) == 0


def test_an_adjustment_is_a_new_entry_and_cannot_go_below_zero(alice):
    start = balance(alice)
    credits_adjust(user=alice, amount=-10, note="Goodwill correction", actor="ops@example.com")
    assert balance(alice) == start - 10
    entry = CreditEntry.objects.get(wallet__user=alice, kind=CreditKind.ADJUSTMENT)
    assert "ops@example.com" in entry.note
    with pytest.raises(InsufficientCredits):
        credits_adjust(user=alice, amount=-(start + 1), note="too much")
    with pytest.raises(ValueError):
        credits_adjust(user=alice, amount=5, note=" ")


def test_the_low_balance_mail_goes_once_per_crossing(alice, settings, django_capture_on_commit_callbacks):
    settings.LOW_BALANCE_THRESHOLD = 100
    with django_capture_on_commit_callbacks(execute=True):
        credits_spend(
            user=alice, amount=balance(alice) - 50, reference="training:3", kind=CreditKind.SPEND_TRAINING
        )
    with django_capture_on_commit_callbacks(execute=True):
        credits_spend(user=alice, amount=10, reference="generation:3", kind=CreditKind.SPEND_GENERATION)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    credits_grant(user=alice, amount=500, reference="test:topup")  # back above: armed again
    with django_capture_on_commit_callbacks(execute=True):
        credits_spend(
            user=alice, amount=balance(alice) - 1, reference="training:4", kind=CreditKind.SPEND_TRAINING
        )
    assert len(mail.outbox) == 2


def test_credits_check_reports_drift_and_fixes_it(alice, bob, capsys):
    call_command("credits_check")  # consistent: no exit
    Wallet.objects.filter(user=bob).update(balance=7)
    with pytest.raises(SystemExit) as info:
        call_command("credits_check")
    assert info.value.code == 1
    assert "bob@example.com" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        call_command("credits_check", "--fix")
    call_command("credits_check")
    assert balance(bob) == sum(CreditEntry.objects.filter(wallet__user=bob).values_list("amount", flat=True))


# --- Races, for real: threads on PostgreSQL -----------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_spends_never_go_below_zero(alice):
    Wallet.objects.filter(user=alice).update(balance=0)
    CreditEntry.objects.filter(wallet__user=alice).delete()
    credits_grant(user=alice, amount=100, reference="test:pool")
    results = run_concurrently(
        lambda i: credits_spend(
            user=alice, amount=30, reference=f"generation:{i}", kind=CreditKind.SPEND_GENERATION
        ),
        8,
    )
    succeeded = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert len(succeeded) == 3 and len(refused) == 5
    assert balance(alice) == 10
    call_command("credits_check")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refund_requested_twice_at_once_refunds_once(alice):
    start = balance(alice)
    credits_spend(user=alice, amount=120, reference="training:9", kind=CreditKind.SPEND_TRAINING)
    results = run_concurrently(lambda i: credits_refund(spend_reference="training:9"), 6)
    assert not any(isinstance(r, Exception) for r in results), results
    assert sum(1 for r in results if r.created) == 1
    assert balance(alice) == start
    assert CreditEntry.objects.filter(reference="refund:training:9").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_grant_at_the_same_moment_adds_once(alice):
    start = balance(alice)
    results = run_concurrently(
        lambda i: credits_grant(user=alice, amount=50, reference="stripe:checkout:cs_x"), 8
    )
    assert not any(isinstance(r, Exception) for r in results), results
    assert sum(1 for r in results if r.created) == 1
    assert balance(alice) == start + 50


def test_the_spend_summary_nets_refunds_per_kind_captioning_included(alice, bob):
    from billing.selectors import spend_summary
    from billing.services.ledger import credits_refund_part

    credits_spend(user=alice, amount=100, reference="training:1", kind=CreditKind.SPEND_TRAINING)
    credits_spend(user=alice, amount=120, reference="training:2", kind=CreditKind.SPEND_TRAINING)
    credits_refund(spend_reference="training:2")  # a failed training: not counted, credits back
    credits_spend(user=alice, amount=30, reference="generation:5", kind=CreditKind.SPEND_GENERATION)
    credits_spend(user=alice, amount=20, reference="caption-batch:7", kind=CreditKind.SPEND_CAPTIONING)
    credits_refund_part(spend_reference="caption-batch:7", part="task:1", amount=2)  # one photo failed
    credits_spend(user=bob, amount=99, reference="training:3", kind=CreditKind.SPEND_TRAINING)

    rows = {row["label"]: (row["count"], row["total"], row["average"]) for row in spend_summary(alice)}

    assert rows == {"Training": (1, 100, 100), "Generation": (1, 30, 30), "Captioning": (1, 18, 18)}


# --- The layout's balance (billing.selectors.balance_shown) ------------------------------------------
def _pill(client) -> str:
    import re

    html = client.get("/account/").content.decode()
    found = re.search(r'id="credit-balance"[^>]*>\s*(\d+) credits', html)
    assert found, html
    return found.group(1)


def test_the_pill_shows_the_balance_after_every_kind_of_ledger_write(alice, alice_client):
    start = balance(alice)
    assert _pill(alice_client) == str(start)  # now cached
    credits_grant(user=alice, amount=100, reference="test:pill:grant")
    assert _pill(alice_client) == str(start + 100)
    credits_spend(user=alice, amount=30, reference="test:pill:spend", kind=CreditKind.SPEND_GENERATION)
    assert _pill(alice_client) == str(start + 70)
    credits_refund(spend_reference="test:pill:spend")
    assert _pill(alice_client) == str(start + 100)


def test_a_rolled_back_spend_never_shows_in_the_pill(alice, alice_client):
    start = balance(alice)
    with pytest.raises(RuntimeError), transaction.atomic():
        credits_spend(user=alice, amount=30, reference="test:pill:rollback", kind=CreditKind.SPEND_GENERATION)
        raise RuntimeError("the caller failed after spending")
    assert _pill(alice_client) == str(start)


@pytest.mark.django_db(transaction=True)
def test_a_spend_committed_on_another_connection_shows_at_once(alice, alice_client):
    """A worker thread (its own database connection) spends while the pill is cached: the entry is
    forgotten when that transaction commits, not only on the connection that wrote it."""
    import threading

    from django.core.cache import cache
    from django.db import connection

    from billing.selectors import balance_shown_key

    start = balance(alice)
    assert _pill(alice_client) == str(start)

    def spend() -> None:
        try:
            with transaction.atomic():
                credits_spend(
                    user=alice, amount=5, reference="test:pill:thread", kind=CreditKind.SPEND_GENERATION
                )
                # Until the commit, another request may cache the old balance again ...
                cache.set(balance_shown_key(alice.pk), start)
        finally:
            connection.close()

    worker = threading.Thread(target=spend)
    worker.start()
    worker.join()
    # ... and the commit forgets it.
    assert _pill(alice_client) == str(start - 5)


def test_wallets_check_fix_refreshes_the_pill(alice, alice_client):
    from django.core.cache import cache

    start = balance(alice)
    Wallet.objects.filter(user=alice).update(balance=start + 7)  # a drift, as a bug might leave
    cache.clear()
    assert _pill(alice_client) == str(start + 7)  # cached
    wallets_check(fix=True)
    assert _pill(alice_client) == str(start)
