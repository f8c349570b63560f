"""A LoRA model's life: created from a training, published to Hugging Face, renamed, deleted.

Status machine (LoraModel.Status): publishing -> ready | publish_failed; publish_failed ->
publishing (a retry). Transitions are compare-and-swap updates, because the pipeline's worker,
a retry task and the owner's retry button may run at the same time.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from fluxsite.integrations import huggingface_client as hf
from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.integrations.replicate_files import weights_fetch
from fluxsite.statemachine import transition
from models_app.bases import FLUX_DEV
from models_app.models import LoraModel
from models_app.selectors import model_sample_images
from models_app.services.hf_accounts import hf_account_token_for_use
from models_app.services.model_card import CardImage, model_card_render
from models_app.services.weights import (
    CONFIG_NAME,
    LORA_NAME,
    TarCaptions,
    weights_extract_lora,
    weights_read_captions,
    weights_store,
)

logger = logging.getLogger(__name__)
Status = LoraModel.Status


class TrainingSource(Protocol):
    """What a model takes from the training it was born of (a training.models.TrainingJob; the
    training app sits above this one, so it is described here rather than imported)."""

    pk: int
    owner_id: int
    name: str
    trigger_word: str
    subject_kind: str
    description: str


class LoraStateError(Exception):
    """The model is not in a state that allows this action (shown to the user as is)."""


# --- Creation ------------------------------------------------------------------------------------
def _free_slug(owner_id: int, name: str) -> str:
    base = (slugify(name) or "model")[:80].strip("-") or "model"
    taken = set(
        LoraModel.objects.filter(owner_id=owner_id, slug__startswith=base).values_list("slug", flat=True)
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def lora_model_create_from_training(
    *,
    training: TrainingSource,
    weights_url: str,
    replicate_version: str,
    params: dict,
    on_captions: Callable[[TarCaptions], None] | None = None,
    base_model: str = FLUX_DEV,
    trained_with: str = "ostris/flux-dev-lora-trainer",
) -> LoraModel:
    """Download, check and store the training's weights; create its model in status publishing.

    Idempotent per training: a second call returns the existing model without downloading.
    Raises IntegrationError from the download or the checks (weights_fetch / weights_extract_lora);
    nothing is created then. Publishing is the caller's next step (lora_publish).
    `on_captions`, when given, receives the caption files the tar carries (weights_read_captions),
    once the weights have passed their checks: the training app keeps the trainer's own.
    `base_model` is the Hugging Face id of the base the trainer trained on (models_app.bases).
    The weights may be a tar (the FLUX trainers) or a zip (the Qwen trainer): both are read.
    """
    training_id = training.pk
    existing = LoraModel.objects.filter(training_id=training_id).first()
    if existing is not None:
        return existing
    prefix = f"weights/{training.owner_id}/{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="fluxsite-weights-") as tmp:
        tar_path = weights_fetch(url=weights_url, dest_dir=Path(tmp))
        lora_path = weights_extract_lora(tar_path=tar_path, dest_dir=Path(tmp) / "extracted")
        if on_captions is not None:
            on_captions(weights_read_captions(tar_path=tar_path))
        tar_path.unlink(missing_ok=True)
        stored = weights_store(lora_path=lora_path, prefix=prefix)

    for _attempt in range(5):
        try:
            with transaction.atomic():
                return LoraModel.objects.create(
                    owner_id=training.owner_id,
                    name=training.name,
                    slug=_free_slug(training.owner_id, training.name),
                    trigger_word=training.trigger_word,
                    subject_kind=training.subject_kind,
                    description=training.description,
                    replicate_version=replicate_version,
                    weights_file_name=stored.weights_name,
                    weights_size=stored.size,
                    weights_sha256=stored.sha256,
                    config_file_name=stored.config_name,
                    training_params=dict(params or {}),
                    base_model=base_model,
                    trained_with=trained_with,
                    training_id=training_id,
                    status=Status.PUBLISHING,
                )
        except IntegrityError:
            # Either another worker created this training's model meanwhile (keep theirs, drop
            # our copy of the files), or another model took the slug (pick again).
            existing = LoraModel.objects.filter(training_id=training_id).first()
            if existing is not None:
                _delete_files([(storage.PRIVATE, stored.weights_name), (storage.PRIVATE, stored.config_name)])
                return existing
    raise IntegrityError("Could not find a free slug for the model.")


# --- Publishing ---------------------------------------------------------------------------------
def _hf_target(model: LoraModel) -> tuple[str, str | None, bool]:
    """(repo id, token or None for ours, via the user's account) for this model."""
    via_user = model.hf_via_user_account if model.hf_repo_id else hasattr(model.owner, "hf_account")
    if via_user:
        username, token = hf_account_token_for_use(user=model.owner)
        repo_id = model.hf_repo_id or f"{username}/{model.slug}"
        return repo_id, token, True
    # Our namespace is shared by every user: the public id keeps repo names apart.
    repo_id = model.hf_repo_id or f"{settings.HF_NAMESPACE}/{model.slug}-{model.public_id.hex[:8]}"
    return repo_id, None, False


def _hf_token(model: LoraModel) -> str | None:
    if model.hf_via_user_account:
        return hf_account_token_for_use(user=model.owner)[1]
    return None


def _read_bytes(alias: str, name: str) -> bytes:
    return b"".join(storage.file_iter(alias=alias, name=name))


def _local_weights(model: LoraModel, tmp: Path) -> Path:
    if storage.is_local(storage.PRIVATE):
        return Path(storage.get_storage(storage.PRIVATE).path(model.weights_file_name))
    path = tmp / LORA_NAME
    with open(path, "wb") as out:
        for chunk in storage.file_iter(alias=storage.PRIVATE, name=model.weights_file_name):
            out.write(chunk)
    return path


CARD_IMAGES = 6  # the cover, the sample grid's prompts (at most SAMPLE_GRID_PROMPTS), then the showcase


def _card_files(model: LoraModel, repo_id: str) -> list[tuple[str, Path | bytes]]:
    """The README.md and the example images its `widget` entries point to."""
    files: list[tuple[str, Path | bytes]] = []
    card_images = []
    for index, sample in enumerate(model_sample_images(model, limit=CARD_IMAGES), start=1):
        path_in_repo = f"images/example_{index}{PurePosixPath(sample.name).suffix.lower() or '.webp'}"
        files.append((path_in_repo, _read_bytes(sample.alias, sample.name)))
        card_images.append(CardImage(path_in_repo=path_in_repo, prompt=sample.prompt or model.trigger_word))
    files.append(("README.md", model_card_render(model=model, repo_id=repo_id, images=card_images).encode()))
    return files


def _publish_files(model: LoraModel, repo_id: str, tmp: Path) -> list[tuple[str, Path | bytes]]:

    files: list[tuple[str, Path | bytes]] = [(LORA_NAME, _local_weights(model, tmp))]
    files += _card_files(model, repo_id)
    if model.config_file_name:
        files.append((CONFIG_NAME, _read_bytes(storage.PRIVATE, model.config_file_name)))
    files.append(
        ("training_params.json", json.dumps(model.training_params, indent=2, sort_keys=True).encode())
    )
    return files


def lora_publish(*, model_id: int) -> LoraModel:
    """Publish the model's weights, card, samples and config to Hugging Face in one commit.

    Idempotent: a ready model is returned as is, and a model some other worker is not allowed to
    claim is returned unchanged. On success the status is ready with the repo and commit; on
    failure it is publish_failed with the error's category and message stored, and the
    IntegrationError is raised again so the caller can retry retryable ones. The weights stay in
    our storage either way.
    """
    model = LoraModel.objects.select_related("owner").get(pk=model_id)
    if model.status == Status.READY:
        return model
    claimed = transition(
        model,
        (Status.PUBLISHING, Status.PUBLISH_FAILED),
        Status.PUBLISHING,
        publish_attempts=F("publish_attempts") + 1,
    )
    if not claimed:
        return model
    try:
        repo_id, token, via_user = _hf_target(model)
        if not model.hf_repo_id:
            LoraModel.objects.filter(pk=model.pk, hf_repo_id="").update(
                hf_repo_id=repo_id, hf_via_user_account=via_user
            )
            model.refresh_from_db()
            repo_id = model.hf_repo_id
        private = not model.is_public
        hf.repo_ensure(repo_id=repo_id, private=private, token=token)
        if model.publish_attempts > 1:
            # The repo may be left over from a failed attempt, made before a visibility change.
            hf.repo_set_private(repo_id=repo_id, private=private, token=token)
        with tempfile.TemporaryDirectory(prefix="fluxsite-publish-") as tmp:
            commit = hf.repo_upload(
                repo_id=repo_id,
                files=_publish_files(model, repo_id, Path(tmp)),
                commit_message=f"Publish {model.name} (trigger word {model.trigger_word})",
                token=token,
            )
    except IntegrationError as exc:
        logger.warning("Publishing LoRA model %s failed: %s (%s)", model.pk, exc, exc.detail)
        transition(
            model,
            Status.PUBLISHING,
            Status.PUBLISH_FAILED,
            publish_error_category=str(exc.category),
            publish_error_message=exc.message[:1000],
        )
        raise
    transition(
        model,
        Status.PUBLISHING,
        Status.READY,
        hf_commit=commit.oid,
        published_at=timezone.now(),
        publish_error_category="",
        publish_error_message="",
    )
    return model


def lora_card_publish(*, model_id: int) -> str | None:
    """Commit the model card and its example images again (after the sample grid was made).

    Only for a published model: one still publishing, or whose publishing failed, gets the same
    card with its weights when it is published. Returns the commit id, or None when skipped.
    Raises IntegrationError from Hugging Face; nothing changes here then.
    """
    model = LoraModel.objects.select_related("owner").get(pk=model_id)
    if model.status != Status.READY or not model.hf_repo_id:
        return None
    commit = hf.repo_upload(
        repo_id=model.hf_repo_id,
        files=_card_files(model, model.hf_repo_id),
        commit_message=f"Update the model card of {model.name}: sample images",
        token=_hf_token(model),
    )
    LoraModel.objects.filter(pk=model.pk).update(hf_commit=commit.oid, updated_at=timezone.now())
    return commit.oid


def lora_publish_retry(*, model: LoraModel) -> None:
    """Move a failed model back to publishing and enqueue the publish task after commit."""
    from django_q.tasks import async_task

    with transaction.atomic():
        if not transition(model, Status.PUBLISH_FAILED, Status.PUBLISHING):
            raise LoraStateError("Only a model whose publishing failed can be retried.")
        transaction.on_commit(
            lambda: async_task(
                "models_app.tasks.lora_publish_task", model.pk, task_name=f"lora-publish-{model.pk}"
            )
        )


# --- Changes by the owner ---------------------------------------------------------------------------
def lora_rename(*, model: LoraModel, name: str) -> LoraModel:
    """Rename on our site; the slug and the Hugging Face repo name stay (links keep working)."""
    name = name.strip()
    if not name:
        raise LoraStateError("A model needs a name.")
    LoraModel.objects.filter(pk=model.pk).update(name=name[:80], updated_at=timezone.now())
    model.refresh_from_db()
    return model


def lora_set_visibility(*, model: LoraModel, visibility: str) -> LoraModel:
    """Make the model private or public, here and on Hugging Face.

    A published repo is changed first (repo_set_private); if Hugging Face refuses, the
    IntegrationError is raised and nothing changes here. An unpublished model's repo gets the
    visibility when it is published.
    """
    if visibility not in LoraModel.Visibility.values:
        raise LoraStateError("Unknown visibility.")
    if model.visibility == visibility:
        return model
    if model.status == Status.READY and model.hf_repo_id:
        hf.repo_set_private(
            repo_id=model.hf_repo_id,
            private=visibility == LoraModel.Visibility.PRIVATE,
            token=_hf_token(model),
        )
    LoraModel.objects.filter(pk=model.pk).update(visibility=visibility, updated_at=timezone.now())
    model.refresh_from_db()
    return model


def _delete_files(files: list[tuple[str, str]]) -> None:
    for alias, name in files:
        if not name:
            continue
        try:
            storage.file_delete(alias=alias, name=name)
        except IntegrationError as exc:
            # An orphan file is a cost, not a failure the user can act on: log it for the prune job.
            logger.warning("Could not delete %s/%s: %s", alias, name, exc.detail)


def lora_delete(*, model: LoraModel, delete_hf_repo: bool) -> None:
    """Delete the model and our copy of its files; with `delete_hf_repo`, its repo too.

    The repo is deleted first: if Hugging Face refuses, IntegrationError is raised and the model
    stays, so the owner can try again or keep the repo and delete only here.
    """
    if delete_hf_repo and model.hf_repo_id:
        hf.repo_delete(repo_id=model.hf_repo_id, token=_hf_token(model), missing_ok=True)
    files = [(storage.PRIVATE, model.weights_file_name), (storage.PRIVATE, model.config_file_name)]
    with transaction.atomic():
        LoraModel.objects.filter(pk=model.pk).delete()
        transaction.on_commit(lambda: _delete_files(files))


# --- The showcase: the latest images made with a model (written by the generations app) ---------------
SHOWCASE_SIZE = 8


def lora_showcase_add(
    *, model_id: int, image_id: int, file_name: str, thumbnail_name: str, prompt: str
) -> None:
    """Put one new image first in the model's showcase (idempotent per image)."""
    item = {"id": image_id, "file_name": file_name, "thumbnail_name": thumbnail_name, "prompt": prompt}
    with transaction.atomic():
        model = LoraModel.objects.select_for_update().filter(pk=model_id).first()
        if model is None:
            return
        items = [item, *(old for old in model.showcase if old.get("id") != image_id)]
        model.showcase = items[:SHOWCASE_SIZE]
        model.save(update_fields=["showcase", "updated_at"])


def lora_showcase_remove(*, model_id: int, file_name: str) -> None:
    """Forget one deleted image: out of the showcase, and no longer the cover if it was."""
    with transaction.atomic():
        model = LoraModel.objects.select_for_update().filter(pk=model_id).first()
        if model is None:
            return
        model.showcase = [item for item in model.showcase if item.get("file_name") != file_name]
        if model.cover_image_name == file_name:
            model.cover_image_name = None
        model.save(update_fields=["showcase", "cover_image_name", "updated_at"])


def lora_cover_set(*, model_id: int, file_name: str) -> None:
    """Use an image in the public storage as the model's cover (the generations app checks it is one of the model's own)."""
    LoraModel.objects.filter(pk=model_id).update(cover_image_name=file_name, updated_at=timezone.now())
