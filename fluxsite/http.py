"""Request types for view annotations: what the middleware and decorators guarantee, told to mypy.

Django's `HttpRequest.user` is `User | AnonymousUser`, and `request.htmx` is set by
django-htmx's middleware, which the stubs cannot know. These subclasses exist only for type
checking (no request is ever an instance of them), as django-stubs and django-htmx document:
- `AuthenticatedHttpRequest` for views behind `@login_required` (or the admin's `admin_view`);
- `HtmxHttpRequest` for views that read `request.htmx`;
- `AuthenticatedHtmxHttpRequest` for logged-in views that read `request.htmx`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

if TYPE_CHECKING:  # the user model is a type here; the request types import no app at run time
    from fluxsite.accounts.models import User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class AuthenticatedHtmxHttpRequest(AuthenticatedHttpRequest, HtmxHttpRequest):
    pass
