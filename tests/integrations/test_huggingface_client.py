"""fluxsite.integrations.huggingface_client against the Hub stand-in over real HTTP.

Faults are armed in the sandbox (sandbox.faults), so every error arrives through the real SDK
and its real HTTP stack before our mapping sees it.
"""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import include, path
from huggingface_hub import constants

from fluxsite.integrations import huggingface_client as hf
from fluxsite.integrations.errors import Category, IntegrationError
from sandbox.faults import fault_inject
from sandbox.huggingface import hub as hub_state
from sandbox.huggingface.models import HubLfsObject
from sandbox.models import FaultKind

pytestmark = pytest.mark.django_db(transaction=True)

# A URLconf with the Hub stand-in at the root of its host, as huggingface.co serves the Hub: used
# as ROOT_URLCONF by the test that makes the client see an endpoint with nothing sandbox-like.
urlpatterns = [path("", include(([path("", include("sandbox.huggingface.urls"))], "sandbox")))]


@pytest.fixture
def hub(sandbox, settings, tmp_path):
    settings.SANDBOX_HF_ROOT = tmp_path / "hf-store"
    hub_state.xet_requests_clear()
    return settings


def test_a_lora_is_published_and_downloaded_back_byte_identical(hub, tmp_path):
    weights = tmp_path / "lora.safetensors"
    weights.write_bytes(os.urandom(12 * 1024 * 1024))
    card = b"---\nbase_model: black-forest-labs/FLUX.1-dev\ninstance_prompt: TOK\n---\n# My LoRA\n"

    url = hf.repo_ensure(repo_id="fluxsite/portrait", private=True)
    assert url.endswith("/sandbox/hf/fluxsite/portrait")
    assert hf.repo_ensure(repo_id="fluxsite/portrait") == url  # exists: fine

    commit = hf.repo_upload(
        repo_id="fluxsite/portrait",
        commit_message="Publish LoRA",
        files=[("lora.safetensors", weights), ("README.md", card)],
    )
    assert len(commit.oid) == 40
    assert commit.url.endswith(commit.oid)

    info = hf.repo_info(repo_id="fluxsite/portrait")
    assert info == hf.HfRepo(
        id="fluxsite/portrait",
        private=True,
        sha=commit.oid,
        files=(".gitattributes", "README.md", "lora.safetensors"),
    )

    got = hf.file_download(
        repo_id="fluxsite/portrait", filename="lora.safetensors", local_dir=tmp_path / "dl"
    )
    assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(weights.read_bytes()).digest()
    got_card = hf.file_download(
        repo_id="fluxsite/portrait", filename="README.md", revision=commit.oid, local_dir=tmp_path / "dl"
    )
    assert got_card.read_bytes() == card


def test_visibility_can_be_toggled(hub):
    hf.repo_ensure(repo_id="fluxsite/vis", private=True)
    hf.repo_set_private(repo_id="fluxsite/vis", private=False)
    assert hf.repo_info(repo_id="fluxsite/vis").private is False
    hf.repo_set_private(repo_id="fluxsite/vis", private=True)
    assert hf.repo_info(repo_id="fluxsite/vis").private is True


def test_a_deleted_repo_is_a_validation_error_and_deleting_it_again_is_harmless(hub):
    hf.repo_ensure(repo_id="fluxsite/tmp")
    hf.repo_delete(repo_id="fluxsite/tmp")
    hf.repo_delete(repo_id="fluxsite/tmp")  # missing_ok by default
    with pytest.raises(IntegrationError) as err:
        hf.repo_info(repo_id="fluxsite/tmp")
    assert err.value.category == Category.VALIDATION
    assert err.value.status == 404
    with pytest.raises(IntegrationError):
        hf.repo_delete(repo_id="fluxsite/tmp", missing_ok=False)


def test_whoami_tells_a_write_token_from_a_read_token(hub):
    assert hf.whoami() == hf.HfIdentity(name=hub.HF_NAMESPACE, can_write=True)
    assert hf.whoami(token="hf_readonly_demo").can_write is False


def test_a_read_only_token_is_refused_on_writes_as_an_authentication_error(hub):
    with pytest.raises(IntegrationError) as err:
        hf.repo_ensure(repo_id="fluxsite/ro", token="hf_readonly_demo")
    assert err.value.category == Category.AUTHENTICATION
    assert err.value.status == 403
    assert "write permission" in err.value.message


def test_uploads_avoid_xet_even_without_the_environment_variable(hub, monkeypatch):
    # As if HF_HUB_DISABLE_XET had never been set: hf_xet is installed, so the SDK would upload
    # through Xet unless the client switches it off.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    payload = os.urandom(64 * 1024)
    hf.repo_ensure(repo_id="fluxsite/noxet")
    hf.repo_upload(repo_id="fluxsite/noxet", files=[("w.safetensors", payload)], commit_message="x")
    assert constants.HF_HUB_DISABLE_XET is True
    # It went the LFS way: the stand-in holds a verified LFS object with that content.
    assert HubLfsObject.objects.filter(oid=hashlib.sha256(payload).hexdigest(), verified=True).exists()
    assert hub_state.xet_requests() == []


def test_a_publish_to_an_endpoint_that_is_not_the_sandbox_never_asks_for_xet(
    hub, live_server, settings, monkeypatch, tmp_path
):
    # Production's conditions: SANDBOX_MODE off, the Hub at the root of its host (as huggingface.co),
    # Xet left on by the environment. The client may not tell this from the real Hub, so whatever it
    # does here it does in production; the stand-in records any Xet token request it gets.
    settings.ROOT_URLCONF = __name__
    settings.SANDBOX_MODE = False
    settings.HF_ENDPOINT = live_server.url
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    weights = tmp_path / "lora.safetensors"
    weights.write_bytes(os.urandom(256 * 1024))

    hf.repo_ensure(repo_id="fluxsite/prod-like", private=True)
    failure = None
    try:
        commit = hf.repo_upload(
            repo_id="fluxsite/prod-like",
            commit_message="Publish LoRA",
            files=[("lora.safetensors", weights), ("README.md", b"# LoRA\n")],
        )
    except IntegrationError as exc:  # the stand-in refuses Xet: say why first
        failure = exc
    assert hub_state.xet_requests() == [], f"the publish asked the Hub for Xet ({failure})"
    assert failure is None
    assert hf.repo_info(repo_id="fluxsite/prod-like").sha == commit.oid
    assert HubLfsObject.objects.filter(
        oid=hashlib.sha256(weights.read_bytes()).hexdigest(), verified=True
    ).exists()


def _create(name: str):
    return lambda: hf.repo_ensure(repo_id=f"fluxsite/{name}")


@pytest.mark.parametrize(
    ("operation", "status", "category", "call"),
    [
        ("whoami", 401, Category.AUTHENTICATION, lambda: hf.whoami()),
        ("repos.create", 403, Category.AUTHENTICATION, _create("forbidden")),
        (
            "commit",
            409,
            Category.VALIDATION,
            lambda: hf.repo_upload(repo_id="fluxsite/base", files=[("a.txt", b"a")], commit_message="x"),
        ),
        ("whoami", 429, Category.RATE_LIMIT, lambda: hf.whoami()),
        ("repo.info", 500, Category.SERVICE_ERROR, lambda: hf.repo_info(repo_id="fluxsite/base")),
        (
            "repos.settings",
            503,
            Category.SERVICE_ERROR,
            lambda: hf.repo_set_private(repo_id="fluxsite/base", private=False),
        ),
    ],
)
def test_each_armed_fault_arrives_as_its_category(hub, operation, status, category, call):
    hf.repo_ensure(repo_id="fluxsite/base")
    fault_inject(service="huggingface", operation=operation, status=status, retry_after=3)
    with pytest.raises(IntegrationError) as err:
        call()
    assert err.value.service == "huggingface"
    assert err.value.category == category
    assert err.value.status == status
    if status == 401:
        assert err.value.message.startswith("Hugging Face refused the token")
    if status == 429:
        assert err.value.retry_after == 3
        assert err.value.retryable is True
    assert hub.HF_TOKEN not in str(err.value) + err.value.detail + err.value.message


def test_a_hub_that_hangs_is_a_timeout(hub):
    hub.HF_TIMEOUT_SECONDS = 1
    fault_inject(service="huggingface", operation="whoami", kind=FaultKind.TIMEOUT, delay_seconds=1.3)
    with pytest.raises(IntegrationError) as err:
        hf.whoami()
    assert err.value.category == Category.TIMEOUT
    assert err.value.retryable is True


def test_a_hub_that_cannot_be_reached_is_a_network_error(settings):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.HF_ENDPOINT = f"http://127.0.0.1:{port}/sandbox/hf"
    with pytest.raises(IntegrationError) as err:
        hf.whoami()
    assert err.value.category == Category.NETWORK


def test_a_missing_token_is_a_configuration_error(settings):
    settings.HF_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="HF_TOKEN"):
        hf.whoami()


@pytest.mark.django_db(transaction=True)
def test_a_409_fault_on_create_still_names_the_repo_so_exist_ok_works(sandbox):
    fault_inject(service="huggingface", operation="repos.create", status=409)
    url = hf.repo_ensure(repo_id="fluxsite/conflicted", private=True)
    assert url.rstrip("/").endswith("fluxsite/conflicted")
