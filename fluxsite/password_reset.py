"""Password reset e-mails whose link is built on SITE_URL, never on the request's Host header.

Django's PasswordResetView builds the link from the request (`domain` = the Host header). Host is
checked against ALLOWED_HOSTS, but a wildcard or a proxy that forwards any Host would let someone
ask for a reset of a victim's account with their own host in the link, and harvest the token when
the victim clicks. SITE_URL is what the operator says the site is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm


class SiteUrlPasswordResetForm(PasswordResetForm):
    # *args and **kwargs keep the parent's signature (PasswordResetView passes everything by keyword);
    # whatever domain and scheme the caller gives, SITE_URL's win.
    def save(self, *args: Any, **kwargs: Any) -> None:
        site = urlsplit(settings.SITE_URL)
        kwargs.update(domain_override=site.netloc, use_https=site.scheme == "https")
        super().save(*args, **kwargs)
