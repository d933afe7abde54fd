"""Prefixed public ids (``pay_...``, ``cus_...``, ``evt_...``): every app's objects are named this way."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
