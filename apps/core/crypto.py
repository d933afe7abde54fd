"""Encryption at rest for secrets (gateway credentials). Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ``settings.FIELD_ENCRYPTION_KEYS`` (comma-separated Fernet keys, newest first, so
keys can be rotated). Production settings refuse to start without them; only development settings
(``DJANGO_DEBUG=1``) fill in a key derived from the development secret key. Nothing here derives a
key: a key derived from ``SECRET_KEY`` would fall with it."""

from __future__ import annotations

import json
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.FIELD_ENCRYPTION_KEYS if k.strip()]
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: no key to encrypt secrets at rest")
    return MultiFernet([Fernet(k) for k in keys])


def encrypt_json(value: dict) -> str:
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict:
    return json.loads(_fernet().decrypt(token.encode()))


def keys_forget() -> None:
    """Read ``FIELD_ENCRYPTION_KEYS`` again at the next use (they are read once per process): for
    a test that changes them."""
    _fernet.cache_clear()
