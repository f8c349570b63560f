from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.core.files.storage import storages
from django.db import transaction

logger = logging.getLogger(__name__)
User = get_user_model()


def user_sign_up(*, email: str, password: str) -> User:
    """Create an account with its wallet and welcome credits, in one transaction."""
    from billing.services import wallet_create_for_new_user

    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password)
        wallet_create_for_new_user(user=user)
    return user


def user_change_email(*, user: User, email: str) -> None:
    user.email = email
    user.save(update_fields=["email"])


def user_delete(*, user: User) -> None:
    """Delete the account and everything it owns: rows cascade, files are removed after commit.

    Each app that stores files for a user lists them through `owned_file_names(user)`, so no
    upload or weights file outlives its owner.
    """
    files: list[tuple[str, str]] = []
    for collector in _file_collectors():
        files.extend(collector(user))
    with transaction.atomic():
        user.delete()

    def remove_files() -> None:
        for alias, name in files:
            try:
                storages[alias].delete(name)
            except Exception:  # a missing file must not stop the rest from going
                logger.warning("could not delete %s from %s", name, alias, exc_info=True)

    transaction.on_commit(remove_files)


def _file_collectors():
    from models_app.selectors import owned_file_names as model_files
    from training.selectors import owned_file_names as training_files

    return (training_files, model_files)
