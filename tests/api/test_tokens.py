"""API tokens: made and revoked on the account page, shown once, stored hashed; bearer auth."""

from __future__ import annotations

import hashlib

import pytest
from django.http import Http404

from fluxsite.accounts.models import ApiToken
from fluxsite.accounts.services import (
    ApiTokenError,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
)

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_as_its_hash_only_and_shows_its_last_four(alice):
    token, secret = api_token_create(user=alice, name="  my   app ", scopes=["read", "generate"])
    assert secret.startswith("fx_") and len(secret) > 40
    token.refresh_from_db()
    assert token.name == "my app"
    assert token.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert token.last4 == secret[-4:] and token.prefix == secret[:8]
    assert secret not in str([getattr(token, f.attname) for f in ApiToken._meta.fields])
    assert token.scopes == ["read", "generate"]


@pytest.mark.parametrize(("name", "scopes"), [("", ["read"]), ("app", []), ("app", ["read", "admin"])])
def test_a_token_needs_a_name_and_known_scopes(alice, name, scopes):
    with pytest.raises(ApiTokenError):
        api_token_create(user=alice, name=name, scopes=scopes)
    assert not ApiToken.objects.exists()


def test_revoking_is_idempotent_and_scoped_to_the_owner(alice, bob):
    token, secret = api_token_create(user=alice, name="app", scopes=["read"])
    with pytest.raises(Http404):
        api_token_revoke(user=bob, token_id=token.pk)
    assert api_token_authenticate(secret=secret) is not None
    assert api_token_revoke(user=alice, token_id=token.pk) is True
    assert api_token_revoke(user=alice, token_id=token.pk) is False
    assert api_token_authenticate(secret=secret) is None


def test_the_account_page_creates_shows_once_and_revokes_a_token(alice, alice_client):
    page = alice_client.get("/account/")
    assert page.status_code == 200 and "API tokens" in page.content.decode()
    answer = alice_client.post(
        "/account/tokens/",
        {"name": "headshots", "scopes": ["read", "generate"]},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    token = ApiToken.objects.get(owner=alice)
    html = answer.content.decode()
    assert 'id="api-tokens"' in html and "<html" not in html  # the partial, for htmx
    secret = html.split('id="new-token-secret">', 1)[1].split("<", 1)[0]
    assert api_token_authenticate(secret=secret) == token
    # Shown once: the page afterwards has the last four characters, never the secret.
    again = alice_client.get("/account/").content.decode()
    assert secret not in again and f"…{token.last4}" in again
    confirm = alice_client.get(f"/account/tokens/{token.pk}/revoke/")
    assert confirm.status_code == 200 and "Revoke" in confirm.content.decode()
    assert alice_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_bad_token_form_is_a_400_with_the_message_and_nothing_made(alice, alice_client):
    answer = alice_client.post("/account/tokens/", {"name": "x"}, headers={"HX-Request": "true"})
    assert answer.status_code == 400
    assert "This field is required" in answer.content.decode()
    assert not ApiToken.objects.exists()


def test_bob_cannot_see_or_revoke_alices_token(alice, bob_client):
    token, _ = api_token_create(user=alice, name="app", scopes=["read"])
    assert bob_client.get(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert bob_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_token_views_need_a_login_and_the_right_method(anon_client, alice_client, alice):
    token, _ = api_token_create(user=alice, name="app", scopes=["read"])
    assert anon_client.post("/account/tokens/", {"name": "x", "scopes": ["read"]}).status_code == 302
    assert anon_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    assert alice_client.get("/account/tokens/").status_code == 405
    assert alice_client.delete(f"/account/tokens/{token.pk}/revoke/").status_code == 405


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer nope",
        "Basic Zm9vOmJhcg==",
        "Bearer fx_" + "a" * 43,
        "Bearer fx_\u00e9" + "a" * 40,
    ],
)
def test_a_missing_malformed_or_unknown_token_is_a_401_problem(client, alice, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.get("/api/v1/balance", headers=headers)
    assert answer.status_code == 401
    assert answer["Content-Type"] == "application/problem+json"
    assert answer["WWW-Authenticate"].startswith("Bearer")
    body = answer.json()
    assert set(body) == {"type", "title", "status", "detail", "errors", "hint"}
    assert body["status"] == 401 and body["type"].endswith("#problem-unauthorized")


def test_a_revoked_token_is_401_at_once(client, alice):
    token, secret = api_token_create(user=alice, name="app", scopes=["read"])
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/balance", headers=headers).status_code == 200
    api_token_revoke(user=alice, token_id=token.pk)
    assert client.get("/api/v1/balance", headers=headers).status_code == 401


def test_last_used_is_recorded_without_a_write_on_every_request(client, alice, django_assert_num_queries):
    token, secret = api_token_create(user=alice, name="app", scopes=["read"])
    headers = {"Authorization": f"Bearer {secret}"}
    client.get("/api/v1/balance", headers=headers)
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    client.get("/api/v1/balance", headers=headers)
    token.refresh_from_db()
    assert token.last_used_at == first


def test_a_token_without_the_scope_is_403(read_only_api, alice):
    answer = read_only_api.post("/api/v1/generations", {"model_id": 1, "prompt": "x"})
    assert answer.status_code == 403
    assert answer.json()["type"].endswith("#problem-insufficient-scope")
