"""Users' Hugging Face tokens at rest: FIELD_ENCRYPTION_KEYS, rotatable (first encrypts, all decrypt)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from fluxsite.integrations.errors import IntegrationError
from models_app.services.hf_accounts import token_decrypt, token_encrypt, token_rotate

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
TOKEN = "hf_users_own_token_0123456789"


def test_a_key_is_rotated_by_putting_a_new_one_first(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    stored = token_encrypt(TOKEN)

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert token_decrypt(stored) == TOKEN  # the old value still reads
    rotated = token_rotate(stored)
    assert Fernet(NEW_KEY).decrypt(rotated.encode()).decode() == TOKEN  # re-encrypted with the new key
    fresh = token_encrypt(TOKEN)
    assert Fernet(NEW_KEY).decrypt(fresh.encode()).decode() == TOKEN  # new values use the new key

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key dropped once everything is rotated
    assert token_decrypt(rotated) == TOKEN
    with pytest.raises(IntegrationError, match="connect your account again"):
        token_decrypt(stored)


def test_without_keys_production_refuses_instead_of_deriving_one_from_secret_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.DEBUG = False
    settings.SANDBOX_MODE = False
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS must be set"):
        token_encrypt(TOKEN)


def test_local_development_derives_a_key_from_secret_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.DEBUG = True
    assert token_decrypt(token_encrypt(TOKEN)) == TOKEN
