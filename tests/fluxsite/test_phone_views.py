"""HTML facts of the phone-first layout (issue 21): what the server sends, whatever the width."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

pytestmark = pytest.mark.django_db


class _TableParents(HTMLParser):
    """For every <table>, the attributes of the element that holds it."""

    VOID = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, str | None]] = []
        self.parents: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.parents.append(self.stack[-1] if self.stack else {})
        if tag not in self.VOID:
            self.stack.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()


def table_parents(html: str) -> list[dict[str, str | None]]:
    parser = _TableParents()
    parser.feed(html)
    return parser.parents


def _alice_has_a_training_and_a_token(alice) -> None:
    from fluxsite.accounts.services import api_token_create
    from training.services import training_create

    training_create(owner=alice, name="Sea", trigger_word="ohwx_sea", subject_kind="subject")
    api_token_create(user=alice, name="laptop", scopes=["read"])


@pytest.mark.parametrize("path", ["/trainings/", "/billing/", "/account/"])
def test_every_table_sits_in_a_keyboard_focusable_named_scroll_region(alice, alice_client, path):
    _alice_has_a_training_and_a_token(alice)
    parents = table_parents(alice_client.get(path).content.decode())
    assert parents, f"{path} shows no table"
    for parent in parents:
        assert "table-wrap" in (parent.get("class") or "").split()
        assert parent.get("tabindex") == "0"
        assert parent.get("role") == "region" and parent.get("aria-label")


def test_a_webhook_endpoints_deliveries_scroll_in_their_own_region(alice, alice_client):
    from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.create(
        owner=alice, url="https://hooks.example.com/fluxsite", secret="whsec_x", events=["training.succeeded"]
    )
    WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_1", type="training.succeeded", payload={})
    parents = table_parents(alice_client.get("/account/").content.decode())
    labels = [p.get("aria-label") for p in parents]
    assert "Deliveries to https://hooks.example.com/fluxsite" in labels


def test_the_empty_models_page_says_how_to_get_a_model(alice_client):
    html = alice_client.get("/models/").content.decode()
    assert "No models yet" in html
    assert 'href="/trainings/new/"' in html


def test_the_empty_gallery_says_how_to_make_an_image(alice_client):
    from django.urls import reverse

    html = alice_client.get(reverse("generations:gallery")).content.decode()
    assert "No images yet" in html
    assert f'href="{reverse("generations:generate")}"' in html and "Generate an image" in html


def test_the_empty_trainings_page_offers_the_first_training(alice_client):
    html = alice_client.get("/trainings/").content.decode()
    assert "No trainings yet" in html and 'href="/trainings/new/"' in html
