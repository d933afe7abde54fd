"""Prefixed public ids (``pay_...``, ``cus_...``, ``evt_...``): every app's objects are named this way."""

from __future__ import annotations

import secrets

# Every prefix our objects' ids take (tests/core/test_ids.py checks each ``new_id`` call uses one):
# the card-number rule (``apps.core.pan``) knows an id's random part by them.
ID_PREFIXES = frozenset(
    {
        "cus_",
        "dis_",
        "evt_",
        "in_",
        "lc_",
        "pay_",
        "paym_",
        "po_",
        "price_",
        "prod_",
        "re_",
        "sub_",
        "tr_",
        "trr_",
        "txr_",
        "ven_",
        "we_",
    }
)
ID_RANDOM_LENGTH = 24  # token_urlsafe(18): 18 random bytes in base64


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
