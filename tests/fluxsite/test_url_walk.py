"""Issue 13, item 10: a walk that stays complete.

Every URL pattern with an identifier is enumerated from the resolver. For each: another user (bob)
gets 404 for alice's object, whatever method the view takes, and an anonymous visitor is sent to
the login page. A new pattern that this file does not know fails the test until it is added here,
either with the objects it names or, with a reason, to the exemptions. And every POST, sent
without a CSRF token, is refused.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from generations.models import GeneratedImage
from tests.generations.generation_kit import finished_generation, lora_model
from tests.training import images
from tests.training.conftest import post_files
from training.models import CaptionBatch, CaptionTask

pytestmark = pytest.mark.django_db

# Reachable without an owner by design, each with why.
EXEMPT = {
    "signed_file": "a signed, expiring token is the authorisation (storage links for Replicate and downloads)",
    "accounts:verify": "the signed link in a verification e-mail; works for whoever holds it",
    "accounts:password_reset_confirm": "Django's signed reset link",
    "models_app:public": "the public share page, by an unguessable id, only for models made public",
    "billing:checkout_pack": "a catalog item, not a user's object",
    "billing:checkout_plan": "a catalog item, not a user's object",
}
# The developer API answers bearer tokens, not sessions (401, never a login redirect): its owners and
# scopes are walked by tests/api/ (test_reads.py, test_write_guards.py).
SKIP_PREFIXES = ("admin/", "sandbox/", "^media/", "^static/", "api/v1/")


def _patterns(patterns=None, prefix: str = "", namespace: str | None = None):
    for item in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(item, URLResolver):
            yield from _patterns(item.url_patterns, prefix + str(item.pattern), item.namespace or namespace)
        elif isinstance(item, URLPattern):
            route = prefix + str(item.pattern)
            if item.pattern.converters and not route.startswith(SKIP_PREFIXES):
                yield (f"{namespace}:{item.name}" if namespace else str(item.name)), item.pattern.converters


@pytest.fixture
def objects(alice, alice_client):
    from training.services import training_create

    training = training_create(owner=alice, name="Walk", trigger_word="ohwx_walk", subject_kind="subject")
    post_files(alice_client, training, [("a.jpg", images.photo(seed=5))])
    dataset_image = training.dataset.images.get()
    caption_batch = CaptionBatch.objects.create(
        dataset=training.dataset,
        owner=alice,
        model="lucataco/florence-2-large",
        version="a" * 64,
        price_per_photo=1,
        cost_credits=1,
    )
    CaptionTask.objects.create(
        batch=caption_batch, image=dataset_image, image_name=dataset_image.original_name
    )
    model = lora_model(alice, replicate_version="fluxsite/lora-walk:" + "b" * 64)
    generation = finished_generation(alice, model, images=1)
    image = GeneratedImage.objects.get(generation=generation)
    from fluxsite.accounts.services import api_token_create

    api_token, _ = api_token_create(user=alice, name="walk", scopes=["read"])
    from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint

    webhook_endpoint = WebhookEndpoint.objects.create(
        owner=alice,
        url="https://93.184.215.14/hooks",
        events=["training.succeeded"],
        secret="whsec_" + "A" * 32,
    )
    WebhookDelivery.objects.create(
        endpoint=webhook_endpoint, event_id="msg_walk", type="training.succeeded", status="succeeded"
    )
    return {
        "api_token": api_token,
        "webhook_endpoint": webhook_endpoint,
        "training": training,
        "dataset_image": dataset_image,
        "caption_batch": caption_batch,
        "model": model,
        "generation": generation,
        "image": image,
    }


def _kwargs(name: str, objects) -> dict:
    app, _, view = name.partition(":")
    if app == "training":
        kwargs = {"pk": objects["training"].pk}
        if view.startswith("image_"):
            kwargs["image_pk"] = objects["dataset_image"].pk
        if view in ("caption_progress", "caption_cancel"):
            kwargs["batch_pk"] = objects["caption_batch"].pk
        return kwargs
    if app == "generations":
        if view.startswith("generation"):
            return {"pk": objects["generation"].pk}
        if view.startswith("image"):
            return {"pk": objects["image"].pk}
        return {"pk": objects["model"].pk}
    if app == "models_app":
        return {"pk": objects["model"].pk}
    if name == "accounts:api_token_revoke":
        return {"pk": objects["api_token"].pk}
    if name in ("accounts:webhook_endpoint_delete", "accounts:webhook_endpoint_test"):
        return {"pk": objects["webhook_endpoint"].pk}
    raise KeyError(name)


def _answers(client: Client, url: str) -> list[int]:
    get = client.get(url)
    return [get.status_code] + ([client.post(url).status_code] if get.status_code == 405 else [])


def test_every_pattern_with_an_identifier_is_known_to_this_walk(objects):
    walked = [name for name, _ in _patterns() if name not in EXEMPT]
    assert len(walked) >= 25, walked  # the resolver walk itself must find the apps' patterns
    unknown = []
    for name, _ in _patterns():
        if name in EXEMPT:
            continue
        try:
            _kwargs(name, objects)
        except KeyError:
            unknown.append(name)
    assert not unknown, f"add these patterns to the walk (objects or EXEMPT with a reason): {unknown}"


def test_another_user_gets_404_for_every_object_url(objects, bob_client):
    wrong = {}
    for name, _ in _patterns():
        if name in EXEMPT:
            continue
        url = reverse(name, kwargs=_kwargs(name, objects))
        answers = _answers(bob_client, url)
        if answers[-1] != 404:
            wrong[url] = answers
    assert not wrong, wrong


def test_an_anonymous_visitor_is_sent_to_log_in_for_every_object_url(objects):
    anon = Client()
    wrong = {}
    for name, _ in _patterns():
        if name in EXEMPT:
            continue
        url = reverse(name, kwargs=_kwargs(name, objects))
        get = anon.get(url)
        response = anon.post(url) if get.status_code == 405 else get
        if response.status_code != 302 or "/login" not in response.get("Location", ""):
            wrong[url] = (get.status_code, response.status_code, response.get("Location"))
    assert not wrong, wrong


def test_every_post_without_a_csrf_token_is_refused(objects, alice):
    """Webhooks are the only POSTs that take no CSRF token: they are signed instead (tested with them)."""
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    accepted = {}
    for item_name, _ in _patterns():
        if item_name in EXEMPT:
            continue
        url = reverse(item_name, kwargs=_kwargs(item_name, objects))
        response = strict.post(url)
        if response.status_code not in (403, 405):
            accepted[url] = response.status_code
    for name in ("accounts:logout", "account_delete", "billing:portal", "generations:generate"):
        try:
            url = reverse(name)
        except Exception:  # noqa: BLE001  (a name this project does not have)
            continue
        status = strict.post(url).status_code
        if status not in (403, 405):
            accepted[url] = status
    assert not accepted, accepted
