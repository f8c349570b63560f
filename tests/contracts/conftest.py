"""Fixtures shared with the billing tests (the signed-event poster)."""

from tests.billing.conftest import post_event  # noqa: F401  (a fixture, used by name)
