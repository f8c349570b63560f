"""Fixtures of the API tests: tokens for alice and bob, a client that sends them, objects to read."""

from __future__ import annotations

import pytest

from fluxsite.accounts.services import api_token_create


class Api:
    """The Django test client with a bearer token (the live-server tests use httpx instead)."""

    def __init__(self, client, secret: str) -> None:
        self.client = client
        self.secret = secret

    def _headers(self, headers):
        return {"Authorization": f"Bearer {self.secret}", **(headers or {})}

    def get(self, path, headers=None, **params):
        return self.client.get(path, params, headers=self._headers(headers))

    def post(self, path, json=None, headers=None):
        import json as jsonlib

        return self.client.post(
            path, jsonlib.dumps(json or {}), content_type="application/json", headers=self._headers(headers)
        )


def token_for(user, scopes=("read", "train", "generate"), name="test"):
    return api_token_create(user=user, name=name, scopes=list(scopes))


@pytest.fixture
def alice_token(alice):
    return token_for(alice)


@pytest.fixture
def alice_api(client, alice_token):
    return Api(client, alice_token[1])


@pytest.fixture
def bob_api(bob):
    from django.test import Client

    return Api(Client(), token_for(bob)[1])


@pytest.fixture
def read_only_api(alice):
    from django.test import Client

    return Api(Client(), token_for(alice, scopes=("read",), name="reader")[1])


def training(owner, **extra):
    from training.models import TrainingJob

    fields = {"name": "Portrait", "trigger_word": "ALICEX", "status": TrainingJob.Status.SUCCEEDED, **extra}
    return TrainingJob.objects.create(owner=owner, **fields)
