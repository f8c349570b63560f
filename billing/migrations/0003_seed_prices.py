"""Seed the packs and the plan that match the Stripe sandbox's prices, so checkout works out of
the box. Operators edit or replace them in the admin; existing rows are left alone."""

from django.db import migrations

PACKS = [
    ("1,000 credits", 1000, "price_sandbox_pack_1000", 1000, 1),
    ("3,000 credits", 3000, "price_sandbox_pack_3000", 2700, 2),
    ("10,000 credits", 10000, "price_sandbox_pack_10000", 8000, 3),
]


def seed(apps, schema_editor):
    CreditPack = apps.get_model("billing", "CreditPack")
    Plan = apps.get_model("billing", "Plan")
    for name, credits, price_id, cents, order in PACKS:
        CreditPack.objects.get_or_create(
            stripe_price_id=price_id,
            defaults={"name": name, "credits": credits, "amount_cents": cents, "currency": "usd", "sort_order": order},
        )
    Plan.objects.get_or_create(
        stripe_price_id="price_sandbox_plan_pro",
        defaults={"name": "Pro", "credits_per_period": 2500, "amount_cents": 1900, "currency": "usd",
                  "interval": "month", "sort_order": 1},
    )


def unseed(apps, schema_editor):
    apps.get_model("billing", "CreditPack").objects.filter(stripe_price_id__startswith="price_sandbox_").delete()
    apps.get_model("billing", "Plan").objects.filter(stripe_price_id__startswith="price_sandbox_").delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_stripe_and_prices")]
    operations = [migrations.RunPython(seed, unseed)]
