"""The model pages: owner scoping (bob gets 404), the anonymous visitor, wrong methods, htmx."""

from __future__ import annotations

import io

import pytest

from fluxsite.integrations import storage
from models_app.models import LoraModel
from models_app.selectors import owned_file_names
from tests.helpers import assert_no_inline_script
from tests.models_app.conftest import safetensors_bytes

pytestmark = pytest.mark.django_db
WEIGHTS = safetensors_bytes(fill=3)


def _model(owner, **extra) -> LoraModel:
    name = storage.file_save(
        alias=storage.PRIVATE, name=f"weights/{owner.pk}/x/lora.safetensors", content=io.BytesIO(WEIGHTS)
    )
    fields = {
        "name": "Portrait",
        "slug": "portrait",
        "trigger_word": "ALICEX",
        "weights_file_name": name,
        "weights_size": len(WEIGHTS),
        "weights_sha256": "0" * 64,
        "status": LoraModel.Status.READY,
        "hf_repo_id": "fluxsite/portrait-1234abcd",
        "hf_commit": "c" * 40,
        **extra,
    }
    return LoraModel.objects.create(owner=owner, **fields)


@pytest.fixture
def model(alice):
    return _model(alice)


def test_the_list_shows_the_owners_models_with_a_placeholder(alice_client, bob, model):
    _model(bob, name="Bob's secret", slug="bob")
    page = alice_client.get("/models/")
    assert page.status_code == 200
    assert b"Portrait" in page.content and b"Bob&#x27;s secret" not in page.content
    assert b"model-thumb placeholder" in page.content


def test_the_model_page_has_the_trigger_word_usage_and_links(alice_client, model):
    page = alice_client.get(f"/models/{model.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-copy-target="#trigger-word"' in html and "copy-text.js" in html
    assert 'load_lora_weights("fluxsite/portrait-1234abcd", weight_name="lora.safetensors")' in html
    assert "/sandbox/hf/fluxsite/portrait-1234abcd" in html or "huggingface" in html
    assert_no_inline_script(html)  # none under our CSP


def test_the_owner_downloads_the_weights_through_an_expiring_signed_link(alice_client, model):
    response = alice_client.get(f"/models/{model.pk}/download/")
    assert response.status_code == 302 and response["Location"].startswith("/files/")
    assert b"".join(alice_client.get(response["Location"]).streaming_content) == WEIGHTS


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/models/{pk}/"),
        ("get", "/models/{pk}/status/"),
        ("get", "/models/{pk}/download/"),
        ("get", "/models/{pk}/delete/"),
        ("post", "/models/{pk}/delete/"),
        ("post", "/models/{pk}/rename/"),
        ("post", "/models/{pk}/visibility/"),
        ("post", "/models/{pk}/publish/"),
    ],
)
def test_bob_gets_404_for_everything_of_alices(bob_client, model, method, path):
    data = {"name": "Hacked", "visibility": "public", "delete_hf_repo": "on"}
    response = getattr(bob_client, method)(path.format(pk=model.pk), data if method == "post" else None)
    assert response.status_code == 404
    model.refresh_from_db()
    assert model.name == "Portrait" and model.visibility == "private"


@pytest.mark.parametrize(
    "path", ["/models/", "/models/{pk}/", "/models/{pk}/download/", "/models/huggingface/"]
)
def test_the_anonymous_visitor_is_sent_to_log_in(anon_client, model, path):
    response = anon_client.get(path.format(pk=model.pk))
    assert response.status_code == 302 and "/account/login" in response["Location"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/models/"),
        ("post", "/models/{pk}/"),
        ("post", "/models/{pk}/download/"),
        ("get", "/models/{pk}/rename/"),
        ("get", "/models/{pk}/visibility/"),
        ("get", "/models/{pk}/publish/"),
        ("put", "/models/{pk}/delete/"),
        ("get", "/models/huggingface/disconnect/"),
        ("post", "/models/p/{uuid}/"),
    ],
)
def test_wrong_methods_get_405(alice_client, model, method, path):
    response = getattr(alice_client, method)(path.format(pk=model.pk, uuid=model.public_id))
    assert response.status_code == 405


def test_the_public_page_needs_no_login_and_a_private_one_is_404_but_for_its_owner(
    anon_client, bob_client, alice_client, model
):
    path = f"/models/p/{model.public_id}/"
    assert anon_client.get(path).status_code == 404
    assert bob_client.get(path).status_code == 404
    assert alice_client.get(path).status_code == 200
    LoraModel.objects.filter(pk=model.pk).update(visibility="public")
    page = anon_client.get(path)
    assert page.status_code == 200 and b"ALICEX" in page.content
    assert b"/download/" not in page.content  # the weights stay the owner's


def test_rename_inline_with_htmx_answers_the_title_fragment(alice_client, model):
    response = alice_client.post(
        f"/models/{model.pk}/rename/", {"name": "  New name  "}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b'id="model-title"' in response.content and b"New name" in response.content
    assert b"<html" not in response.content
    model.refresh_from_db()
    assert model.name == "New name" and model.slug == "portrait"


def test_rename_without_javascript_redirects_and_an_empty_name_is_refused(alice_client, model):
    assert alice_client.post(f"/models/{model.pk}/rename/", {"name": "Plain"}).status_code == 302
    bad = alice_client.post(f"/models/{model.pk}/rename/", {"name": "   "}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422
    model.refresh_from_db()
    assert model.name == "Plain"


def test_retry_is_refused_unless_publishing_failed(alice_client, model):
    response = alice_client.post(f"/models/{model.pk}/publish/", follow=True)
    assert b"Only a model whose publishing failed" in response.content
    model.refresh_from_db()
    assert model.status == LoraModel.Status.READY


def test_the_status_fragment_stops_polling_once_publishing_is_over(alice_client, model):
    response = alice_client.get(f"/models/{model.pk}/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 286
    LoraModel.objects.filter(pk=model.pk).update(status=LoraModel.Status.PUBLISHING)
    response = alice_client.get(f"/models/{model.pk}/status/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b"every 3s" in response.content


def test_delete_asks_first_then_removes_the_model_and_its_weights(
    alice_client, model, django_capture_on_commit_callbacks
):
    page = alice_client.get(f"/models/{model.pk}/delete/")
    assert page.status_code == 200 and b"Also delete the Hugging Face repository" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/models/{model.pk}/delete/")
    assert response.status_code == 302
    assert not LoraModel.objects.exists()
    assert not storage.get_storage(storage.PRIVATE).exists(model.weights_file_name)


def test_owned_file_names_lists_the_users_weights_only(alice, bob, model):
    _model(bob, slug="bob")
    assert owned_file_names(alice) == [(storage.PRIVATE, model.weights_file_name)]
