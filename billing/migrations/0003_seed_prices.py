"""Formerly inserted the Stripe sandbox's packs and plan on every database, production included.

Now a no-op, kept because 0004 depends on it. New databases start with an empty catalog, loaded by
`manage.py catalog_seed FILE` (billing/services/catalog.py): `make run`'s demo setup loads
sandbox/stripe/catalog.json, production its own prices or the admin. Databases that already ran the
old version keep their rows, on purpose: deleting them here could not tell a laptop from production,
and checkouts and subscriptions refer to them (PROTECT). Outside the sandbox, check billing.W001
(`manage.py check --database default`, also run by `migrate`) names any sandbox price still active.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_stripe_and_prices")]
    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
