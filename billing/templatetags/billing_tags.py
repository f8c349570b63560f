from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def cents(value: int | None, currency: str = "usd") -> str:
    """Integer minor units as money text (12345, "usd" -> "$123.45"); integer math only."""
    if value is None:
        return ""
    whole, minor = divmod(abs(int(value)), 100)
    sign = "-" if value < 0 else ""
    symbol = "$" if (currency or "usd").lower() == "usd" else f"{currency.upper()} "
    return f"{sign}{symbol}{whole:,}.{minor:02d}"
