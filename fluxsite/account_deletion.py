"""Deleting an account and everything it owns: the one service that reaches into every app.

It sits above the apps (accounts, billing, models, generations, training), so none of them has to
know about the others: each app that stores files for a user lists them through its selectors'
`owned_file_names(user)`, rows go by cascade, and the files are removed after commit, so no
upload, weights file or image outlives its owner.
"""

from __future__ import annotations

import logging

from django.core.files.storage import storages
from django.db import transaction

from fluxsite.accounts.models import User
from generations.selectors import owned_file_names as generation_files
from models_app.selectors import owned_file_names as model_files
from training.selectors import owned_file_names as training_files

logger = logging.getLogger(__name__)

FILE_COLLECTORS = (training_files, model_files, generation_files)


def account_delete(*, user: User) -> None:
    """Delete the account and everything it owns: rows cascade, files are removed after commit."""
    files: list[tuple[str, str]] = []
    for collector in FILE_COLLECTORS:
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
