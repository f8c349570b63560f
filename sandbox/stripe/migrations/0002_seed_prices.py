"""Seed the products and prices the sandbox sells (see sandbox.stripe.seed)."""

from django.db import migrations

from sandbox.stripe.seed import SEED_IDS, seed_records


def seed(apps, schema_editor):
    seed_records(apps.get_model("sandbox_stripe", "StripeRecord"))


def unseed(apps, schema_editor):
    apps.get_model("sandbox_stripe", "StripeRecord").objects.filter(id__in=SEED_IDS).delete()


class Migration(migrations.Migration):
    dependencies = [("sandbox_stripe", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
