"""The authentication backend: Django's ModelBackend, with the per-request user read compiled once.

Every logged-in page reads its user by the id in the session. ModelBackend builds and compiles that
`User.objects.get(pk=...)` on every request, which cost more than running it (issue 15: about half
of the user's cost on the dashboard pages); the prepared query keeps the SQL.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError

from fluxsite.accounts.models import User
from fluxsite.prepared import PreparedQuery

_USER_BY_ID = PreparedQuery(User, lambda pk: User._default_manager.filter(pk=pk), "pk")


class UserBackend(ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        try:
            pk = User._meta.pk.to_python(user_id)
        except (ValidationError, TypeError, ValueError):
            return None  # a session holding a bad id is a logged-out visitor
        users = _USER_BY_ID.list(pk=pk)
        return users[0] if users and self.user_can_authenticate(users[0]) else None
