"""Admin inlines of lists that grow without bound show the latest 50 rows and link to all of them."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from billing.models import CreditEntry, Wallet
from training.models import TrainingEvent
from training.services import training_create

pytestmark = pytest.mark.django_db


def test_a_wallet_page_shows_its_latest_50_entries_and_links_to_all(staff_client, alice, bob):
    wallet = Wallet.objects.get(user=alice)
    CreditEntry.objects.bulk_create(
        CreditEntry(
            wallet=wallet, kind="billing.credits.adjusted", amount=1, balance_after=i, reference=f"row:{i:03}"
        )
        for i in range(60)
    )
    CreditEntry.objects.create(
        wallet=Wallet.objects.get(user=bob),
        kind="billing.credits.adjusted",
        amount=1,
        balance_after=1,
        reference="bob:1",
    )
    total = CreditEntry.objects.filter(wallet=wallet).count()

    body = staff_client.get(reverse("admin:billing_wallet_change", args=[wallet.pk])).content.decode()

    shown = set(re.findall(r"row:\d{3}", body))
    assert len(shown) == 50 and "row:059" in shown and "row:000" not in shown  # the latest, newest first
    assert f"50 of {total} shown below" in body
    link = re.search(r'href="([^"]*creditentry/\?wallet__id__exact=\d+)"', body).group(1)
    listing = staff_client.get(link.replace("&amp;", "&"))
    assert listing.status_code == 200
    assert "row:059" in listing.content.decode()  # the wallet's own entries, and nobody else's
    assert "bob:1" not in listing.content.decode()


def test_a_training_page_shows_its_latest_50_events(staff_client, alice):
    job = training_create(owner=alice, name="Rex", trigger_word="ohwx_rex", subject_kind="subject")
    TrainingEvent.objects.bulk_create(
        TrainingEvent(job=job, stage="replicate_training", message=f"Step {i:03} of 100.") for i in range(80)
    )
    total = job.events.count()

    body = staff_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()

    shown = set(re.findall(r"Step \d{3} of 100", body))
    assert len(shown) == 50 and "Step 079 of 100" in shown and "Step 000 of 100" not in shown
    assert f"50 of {total} shown below" in body
