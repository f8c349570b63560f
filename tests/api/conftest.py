"""Fixtures of the API tests: tokens for alice and bob, a client that sends them, objects to read."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

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


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records each POST and answers the next status code."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.codes: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((body, {k.lower(): v for k, v in self.headers.items()}))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def verified(self, secret: str) -> list[dict]:
        """Every request's payload, each verified with the official library (raises if one is not)."""
        return [Webhook(secret).verify(body, headers) for body, headers in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()
