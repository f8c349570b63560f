"""The catalog of packs and plans: no migration inserts it, `catalog_seed` loads it from a file."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.checks import sandbox_prices_outside_the_sandbox
from billing.models import CreditPack, Plan
from billing.services.catalog import CatalogError, catalog_read
from sandbox.stripe.seed import PRICES
from tests.conftest import SANDBOX_CATALOG, catalog_load


def _seed(path=SANDBOX_CATALOG) -> str:
    out = io.StringIO()
    call_command("catalog_seed", path, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migrating_a_fresh_database_inserts_no_catalog():
    call_command("migrate", "billing", "0002", verbosity=0)
    assert not CreditPack.objects.exists() and not Plan.objects.exists()
    call_command("migrate", "billing", verbosity=0)  # 0003, which used to seed the sandbox's prices
    assert not CreditPack.objects.exists() and not Plan.objects.exists()


@pytest.mark.django_db
def test_the_seed_command_adds_the_sandbox_catalog_once_and_keeps_admin_edits():
    CreditPack.objects.all().delete()
    Plan.objects.all().delete()

    assert "3 of 3 packs and 1 of 1 plans added" in _seed()
    assert list(CreditPack.objects.values_list("stripe_price_id", "credits", "amount_cents")) == [
        ("price_sandbox_pack_1000", 1000, 1000),
        ("price_sandbox_pack_3000", 3000, 2700),
        ("price_sandbox_pack_10000", 10000, 8000),
    ]
    plan = Plan.objects.get()
    assert (plan.stripe_price_id, plan.credits_per_period, plan.interval) == (
        "price_sandbox_plan_pro",
        2500,
        "month",
    )

    CreditPack.objects.filter(stripe_price_id="price_sandbox_pack_1000").update(name="Starter", active=False)
    assert "0 of 3 packs and 0 of 1 plans added" in _seed()
    assert CreditPack.objects.count() == 3 and Plan.objects.count() == 1
    assert CreditPack.objects.get(stripe_price_id="price_sandbox_pack_1000").name == "Starter"


def test_the_sandbox_catalog_sells_exactly_the_prices_the_stripe_sandbox_has():
    packs, plans = catalog_read(SANDBOX_CATALOG)
    prices = {
        pid: (amount, interval, metadata) for pid, _product, amount, interval, _nick, metadata in PRICES
    }
    for pack in packs:
        assert prices[pack.stripe_price_id] == (pack.amount_cents, None, {"credits": str(pack.credits)})
    for plan in plans:
        assert prices[plan.stripe_price_id][:2] == (plan.amount_cents, plan.interval)
    assert {p.stripe_price_id for p in packs} | {p.stripe_price_id for p in plans} == set(prices)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not JSON"),
        ('{"packs": [], "prices": []}', 'expected an object with "packs"'),
        ('{"packs": [{"stripe_price_id": "p", "name": "n", "credits": 10}]}', "amount_cents"),
        (
            '{"packs": [{"stripe_price_id": "p", "name": "n", "credits": true, "amount_cents": 1}]}',
            "credits must be a whole number",
        ),
        (
            '{"plans": [{"stripe_price_id": "p", "name": "n", "credits_per_period": 1, "amount_cents": 9.5}]}',
            "amount_cents must be a whole number",
        ),
        (
            '{"packs": [{"stripe_price_id": "p", "name": "n", "credits": 1, "amount_cents": 1, "x": 1}]}',
            "'x'",
        ),
    ],
)
def test_a_malformed_catalog_file_is_refused_naming_the_entry(tmp_path, content, expected):
    path = tmp_path / "catalog.json"
    path.write_text(content)
    with pytest.raises(CatalogError, match=expected):
        catalog_read(path)


@pytest.mark.django_db
def test_the_command_reports_a_missing_file_as_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        _seed(tmp_path / "missing.json")


@pytest.mark.django_db
def test_the_demo_setup_of_make_run_loads_the_sandbox_catalog(settings):
    CreditPack.objects.all().delete()
    Plan.objects.all().delete()
    settings.DEBUG, settings.SANDBOX_MODE = True, True
    call_command("ensure_demo_account", stdout=io.StringIO())
    assert CreditPack.objects.count() == 3 and Plan.objects.count() == 1


@pytest.mark.django_db
def test_the_demo_setup_loads_no_sandbox_prices_against_real_stripe(settings):
    CreditPack.objects.all().delete()
    settings.DEBUG, settings.SANDBOX_MODE = True, False
    call_command("ensure_demo_account", stdout=io.StringIO())
    assert not CreditPack.objects.exists()


@pytest.mark.django_db
def test_an_old_database_still_selling_sandbox_prices_outside_the_sandbox_gets_a_warning(settings):
    catalog_load()
    settings.SANDBOX_MODE = False
    warnings = sandbox_prices_outside_the_sandbox(None, databases=["default"])
    assert [w.id for w in warnings] == ["billing.W001"] and "1,000 credits" in warnings[0].msg

    CreditPack.objects.update(active=False)
    Plan.objects.update(active=False)
    assert sandbox_prices_outside_the_sandbox(None, databases=["default"]) == []
    settings.SANDBOX_MODE = True
    CreditPack.objects.update(active=True)
    assert sandbox_prices_outside_the_sandbox(None, databases=["default"]) == []


def test_the_first_migrate_of_a_new_database_with_production_settings_succeeds(tmp_path):
    """The check above runs before `migrate` creates its tables: on a new database it must not query them."""
    import os
    import subprocess
    import sys

    from cryptography.fernet import Fernet
    from django.conf import settings

    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
        },
        "DEBUG": "false",
        "SANDBOX_MODE": "false",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "fluxsite.example.com",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "STRIPE_SECRET_KEY": "sk_test_x",
        "FLUXSITE_VAR_DIR": str(tmp_path),
        "SQLITE_PATH": str(tmp_path / "new.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
