"""Template helpers for generated images."""

from __future__ import annotations

from django import template

from fluxsite.integrations import storage

register = template.Library()


@register.filter
def public_url(name: str) -> str:
    """URL of a file in the public storage (generated images and thumbnails)."""
    return storage.public_url(name=name) if name else ""
