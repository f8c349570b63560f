"""From a training's weights to a published Hugging Face repo, through the real huggingface_hub
and httpx against the sandbox over HTTP; faults are armed in the sandbox, never patched in."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import yaml
from django.db import connection
from django.utils import timezone

from fluxsite.integrations import huggingface_client as hf
from fluxsite.integrations import storage
from fluxsite.integrations.errors import Category, IntegrationError
from models_app.models import HuggingFaceAccount, LoraModel
from models_app.services import (
    lora_delete,
    lora_model_create_from_training,
    lora_publish,
    lora_set_visibility,
)
from sandbox.faults import fault_clear, fault_inject
from tests.models_app.conftest import good_tar, safetensors_bytes
from training.models import TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)
PARAMS = {"steps": 1000, "learning_rate": 0.0004, "lora_rank": 16, "resolution": "512,768,1024"}
VERSION = "fluxsite/portrait:" + "a" * 64


@pytest.fixture
def training(alice):
    return TrainingJob.objects.create(
        owner=alice,
        name="Alice portrait",
        trigger_word="ALICEX",
        subject_kind="subject",
        description="Me, in good light.",
    )


@pytest.fixture
def lora_bytes():
    return safetensors_bytes(fill=42)


@pytest.fixture
def model(sandbox, file_server, training, lora_bytes):
    file_server.routes["/trained_model.tar"] = good_tar(lora_bytes)
    return lora_model_create_from_training(
        training=training,
        weights_url=file_server.url("/trained_model.tar"),
        replicate_version=VERSION,
        params=PARAMS,
    )


def _stored(model: LoraModel) -> bytes:
    return b"".join(storage.file_iter(alias=storage.PRIVATE, name=model.weights_file_name))


def test_the_weights_are_stored_and_published_and_come_back_byte_identical(model, lora_bytes, tmp_path):
    assert model.status == LoraModel.Status.PUBLISHING
    assert _stored(model) == lora_bytes
    assert model.weights_sha256 == hashlib.sha256(lora_bytes).hexdigest() and model.weights_size == len(
        lora_bytes
    )
    assert model.config_file_name

    published = lora_publish(model_id=model.pk)
    assert published.status == LoraModel.Status.READY
    assert published.hf_repo_id.startswith("fluxsite/alice-portrait-")
    info = hf.repo_info(repo_id=published.hf_repo_id)
    assert info.private is True
    assert info.sha == published.hf_commit
    assert {"lora.safetensors", "README.md", "config.yaml", "training_params.json"} <= set(info.files)

    back = hf.file_download(
        repo_id=published.hf_repo_id, filename="lora.safetensors", local_dir=tmp_path / "dl"
    )
    assert back.read_bytes() == lora_bytes
    card = hf.file_download(
        repo_id=published.hf_repo_id, filename="README.md", local_dir=tmp_path / "dl"
    ).read_text()
    _, front, body = card.split("---", 2)
    meta = yaml.safe_load(front)
    assert meta["tags"] == ["text-to-image", "flux", "lora", "diffusers", "template:sd-lora"]
    assert meta["base_model"] == "black-forest-labs/FLUX.1-dev"
    assert meta["instance_prompt"] == "ALICEX"
    assert meta["license"] == "other" and meta["license_name"] == "flux-1-dev-non-commercial-license"
    assert "widget" not in meta  # no sample images yet
    assert f'pipeline.load_lora_weights("{published.hf_repo_id}", weight_name="lora.safetensors")' in body
    assert "## Trigger words" in body and "| Steps | 1000 |" in body and VERSION in body

    assert lora_publish(model_id=model.pk).hf_commit == published.hf_commit  # idempotent: no second commit


def test_creating_twice_for_one_training_returns_the_same_model(model, training, file_server):
    again = lora_model_create_from_training(
        training=training, weights_url=file_server.url("/missing"), replicate_version=VERSION, params={}
    )
    assert again.pk == model.pk
    assert LoraModel.objects.count() == 1


def test_a_refused_tar_creates_no_model(sandbox, file_server, training):
    file_server.routes["/bad.tar"] = good_tar(b"definitely not safetensors")
    with pytest.raises(IntegrationError) as err:
        lora_model_create_from_training(
            training=training,
            weights_url=file_server.url("/bad.tar"),
            replicate_version=VERSION,
            params={},
        )
    assert "not a valid safetensors file" in err.value.message
    assert not LoraModel.objects.exists()


def test_the_weights_tar_of_the_sandbox_trainer_is_accepted(sandbox, training):
    from sandbox.replicate.models import SandboxTraining

    long_ago = timezone.now() - timedelta(hours=1)
    run = SandboxTraining.objects.create(
        id="sbxtrain1",
        trainer="ostris/flux-dev-lora-trainer",
        trainer_version="v" * 64,
        destination="fluxsite/portrait",
        input={"trigger_word": "ALICEX", "lora_rank": 4},
        base_url=f"{sandbox}/sandbox/replicate",
        created_at=long_ago,
        duration_seconds=1,
        dataset_checked_at=long_ago,
    )
    url = f"{sandbox}/sandbox/replicate/v1/files/trainings/{run.id}/trained_model.tar"
    model = lora_model_create_from_training(
        training=training, weights_url=url, replicate_version=VERSION, params={}
    )
    assert model.weights_size > 0 and model.config_file_name
    assert b"trigger_word: ALICEX" in b"".join(
        storage.file_iter(alias=storage.PRIVATE, name=model.config_file_name)
    )


@pytest.mark.parametrize(
    ("operation", "status", "category"),
    [
        ("repos.create", 401, Category.AUTHENTICATION),
        ("commit", 403, Category.AUTHENTICATION),
        ("commit", 429, Category.RATE_LIMIT),
        ("commit", 500, Category.SERVICE_ERROR),
    ],
)
def test_a_hub_failure_leaves_a_usable_model_that_a_retry_publishes(
    model, lora_bytes, alice_client, operation, status, category
):
    fault_inject(service="huggingface", operation=operation, status=status, retry_after=0, times=None)
    with pytest.raises(IntegrationError) as err:
        lora_publish(model_id=model.pk)
    assert err.value.category == category
    model.refresh_from_db()
    assert model.status == LoraModel.Status.PUBLISH_FAILED
    assert model.publish_error_category == category
    assert model.publish_error_message

    # Still usable: the owner downloads our own copy while the Hub is failing.
    page = alice_client.get(f"/models/{model.pk}/")
    assert b"Retry publishing" in page.content
    link = alice_client.get(f"/models/{model.pk}/download/")
    assert b"".join(alice_client.get(link["Location"]).streaming_content) == lora_bytes

    fault_clear(service="huggingface")
    response = alice_client.post(f"/models/{model.pk}/publish/")  # the task runs synchronously in tests
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.status == LoraModel.Status.READY
    assert model.publish_error_message == "" and model.publish_attempts == 2
    assert hf.repo_info(repo_id=model.hf_repo_id).sha == model.hf_commit


def test_an_existing_repo_is_fine(model, settings):
    # The Hub answers 409 for a repo that exists; exist_ok makes that a success. (An armed 409
    # fault is not used: the sandbox's fault reply carries the endpoint, not the repo URL, which
    # huggingface_hub cannot parse; reported to the sandbox's owner.)
    repo_id = f"{settings.HF_NAMESPACE}/{model.slug}-{model.public_id.hex[:8]}"
    hf.repo_ensure(repo_id=repo_id, private=True)
    published = lora_publish(model_id=model.pk)
    assert published.status == LoraModel.Status.READY and published.hf_repo_id == repo_id


def test_visibility_is_mirrored_to_the_hub_and_the_public_page_follows(model, anon_client):
    model = lora_publish(model_id=model.pk)
    public_path = f"/models/p/{model.public_id}/"
    assert anon_client.get(public_path).status_code == 404

    lora_set_visibility(model=model, visibility="public")
    assert hf.repo_info(repo_id=model.hf_repo_id).private is False
    page = anon_client.get(public_path)
    assert page.status_code == 200 and b"ALICEX" in page.content

    fault_inject(service="huggingface", operation="repos.settings", status=500)
    with pytest.raises(IntegrationError):
        lora_set_visibility(model=model, visibility="private")
    model.refresh_from_db()
    assert model.visibility == "public"  # the Hub refused, so nothing changed here either


def test_deleting_with_the_repo_removes_both(model):
    model = lora_publish(model_id=model.pk)
    repo_id, weights = model.hf_repo_id, model.weights_file_name
    lora_delete(model=model, delete_hf_repo=True)
    assert not LoraModel.objects.exists()
    assert not storage.get_storage(storage.PRIVATE).exists(weights)
    with pytest.raises(IntegrationError) as err:
        hf.repo_info(repo_id=repo_id)
    assert err.value.status == 404


def test_a_users_own_token_is_checked_stored_encrypted_and_used(
    sandbox, settings, alice, alice_client, model
):
    bad = alice_client.post("/models/huggingface/", {"token": "hf_readonly_demo_token"})
    assert b"read-only" in bad.content
    assert not HuggingFaceAccount.objects.exists()

    token = settings.HF_TOKEN  # the one token the sandbox Hub accepts as a writer
    response = alice_client.post("/models/huggingface/", {"token": token})
    assert response.status_code == 302
    page = alice_client.get("/models/huggingface/")
    assert f"…{token[-4:]}".encode() in page.content and token.encode() not in page.content
    with connection.cursor() as cursor:
        cursor.execute("SELECT token_encrypted, token_last4 FROM models_app_huggingfaceaccount")
        encrypted, last4 = cursor.fetchone()
    assert token not in encrypted and last4 == token[-4:]

    published = lora_publish(model_id=model.pk)
    assert published.hf_via_user_account is True
    assert published.hf_repo_id == f"{settings.HF_NAMESPACE}/{published.slug}"

    alice_client.post("/models/huggingface/disconnect/")
    assert not HuggingFaceAccount.objects.exists()
    with pytest.raises(IntegrationError) as err:
        lora_set_visibility(model=published, visibility="public")
    assert err.value.category == Category.AUTHENTICATION and "connect it again" in err.value.message
