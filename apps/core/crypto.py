"""Encryption at rest for secrets (gateway credentials). Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ``FIELD_ENCRYPTION_KEYS`` (comma-separated Fernet keys, newest first, so keys can
be rotated); without it a key is derived from ``DJANGO_SECRET_KEY`` (fine for development)."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@cache
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.FIELD_ENCRYPTION_KEYS if k.strip()]
    if not keys:
        derived = base64.urlsafe_b64encode(
            hashlib.sha256(("field-encryption:" + settings.SECRET_KEY).encode()).digest()
        )
        keys = [derived.decode()]
    return MultiFernet([Fernet(k) for k in keys])


def encrypt_json(value: dict) -> str:
    return _fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict:
    return json.loads(_fernet().decrypt(token.encode()))
