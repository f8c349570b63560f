"""manage.py credits_grant: a grant through the ledger, with a reason and a unique reference."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from billing.models import CreditEntry, CreditKind
from billing.selectors import balance_for_user

pytestmark = pytest.mark.django_db


def grant(*args: str) -> str:
    out = io.StringIO()
    call_command("credits_grant", *args, stdout=out)
    return out.getvalue()


def test_it_grants_credits_with_the_reason_on_the_ledger(alice):
    before = balance_for_user(alice)
    out = grant("--user", "ALICE@example.com", "--credits", "250", "--reason", "Support ticket 1234")
    assert balance_for_user(alice) == before + 250
    entry = CreditEntry.objects.filter(wallet__user=alice, kind=CreditKind.GRANT).get()
    assert entry.amount == 250
    assert entry.reference.startswith("grant:cli:")
    assert entry.note.startswith("Support ticket 1234 (granted by ")
    assert f"balance now {before + 250}" in out


def test_two_runs_without_a_reference_are_two_grants(alice):
    before = balance_for_user(alice)
    grant("--user", "alice@example.com", "--credits", "10", "--reason", "Goodwill")
    grant("--user", "alice@example.com", "--credits", "10", "--reason", "Goodwill")
    assert balance_for_user(alice) == before + 20
    assert CreditEntry.objects.filter(kind=CreditKind.GRANT).values("reference").distinct().count() == 2


def test_the_same_reference_grants_once(alice):
    before = balance_for_user(alice)
    grant("--user", "alice@example.com", "--credits", "75", "--reason", "Outage", "--reference", "INC-7")
    out = grant(
        "--user", "alice@example.com", "--credits", "75", "--reason", "Outage", "--reference", "INC-7"
    )
    assert balance_for_user(alice) == before + 75
    assert "Nothing granted: grant:cli:INC-7 was already used" in out


@pytest.mark.parametrize("credits", ["0", "-5"])
def test_it_refuses_a_grant_that_is_not_positive(alice, credits):
    before = balance_for_user(alice)
    with pytest.raises(CommandError, match="positive"):
        grant("--user", "alice@example.com", "--credits", credits, "--reason", "Why not")
    assert balance_for_user(alice) == before


def test_it_refuses_a_blank_reason(alice):
    with pytest.raises(CommandError, match="--reason must say why"):
        grant("--user", "alice@example.com", "--credits", "5", "--reason", "   ")
    assert not CreditEntry.objects.filter(kind=CreditKind.GRANT).exists()


def test_it_refuses_a_missing_reason(alice):
    with pytest.raises(CommandError, match="--reason"):
        grant("--user", "alice@example.com", "--credits", "5")


def test_it_refuses_an_unknown_address(db):
    with pytest.raises(CommandError, match="No account has the address"):
        grant("--user", "nobody@example.com", "--credits", "5", "--reason", "Test")
