"""Is this body really from the processor? Checked over the raw request body, before it is parsed
or stored. Secrets come from the gateway account's encrypted credentials; each may be one value or
a list (newest first), so a secret can be rotated without dropping events signed with the old one.

- Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256 of ``"{t}.{body}"``
  with the endpoint secret (``credentials["webhook_secret"]``, ``whsec_...``); every ``v1`` is tried
  (Stripe sends two while its secret rolls), in constant time, and a timestamp further than the
  tolerance (300 s) from now is refused, in either direction. stripe-python's
  ``WebhookSignature.verify_header`` checks the signatures and the past; we refuse a timestamp dated
  in the future (a signature made to be replayed later) and a header with more than one ``t``.
- Adyen: each notification item carries ``additionalData.hmacSignature``, base64 HMAC-SHA256 over
  ``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:
  success`` with the hex HMAC key (``credentials["hmac_key"]``); the SDK's
  ``Adyen.util.is_valid_hmac_notification`` computes and compares it in constant time. Every item of a
  batch must verify. Optionally (``credentials["webhook_username"]`` / ``["webhook_password"]``) the
  request's basic auth is checked too, as Adyen recommends.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time

import stripe
from Adyen.util import is_valid_hmac_notification

STRIPE_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The body is not proven to come from the processor; nothing may be stored."""


def secrets_of(credentials: dict, name: str) -> list[str]:
    """The configured secret(s) under ``name``: a string or a list of strings (rotation)."""
    value = credentials.get(name)
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, str) and v]


def stripe_verify(*, body: bytes, header: str | None, secrets: list[str]) -> None:
    """Raise SignatureError unless ``header`` signs ``body`` with one of ``secrets`` and its
    timestamp is within the tolerance of now, before or after."""
    if not secrets:
        raise SignatureError("no webhook_secret is configured for this gateway account")
    if not header:
        raise SignatureError("the Stripe-Signature header is missing")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("the body is not UTF-8") from None
    timestamps = [
        v.strip() for k, _, v in (part.partition("=") for part in header.split(",")) if k.strip() == "t"
    ]
    if len(timestamps) > 1:
        raise SignatureError("Stripe-Signature: more than one timestamp")
    if timestamps and timestamps[0].isdigit() and int(timestamps[0]) > time.time() + STRIPE_TOLERANCE_SECONDS:
        raise SignatureError("Stripe-Signature: Timestamp outside the tolerance zone (dated in the future)")
    reason = "no signature matches"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=STRIPE_TOLERANCE_SECONDS)
            return
        except stripe.SignatureVerificationError as exc:
            reason = str(exc).split(" (")[0]
    raise SignatureError(f"Stripe-Signature: {reason}")


def adyen_verify(*, items: list[dict], keys: list[str]) -> None:
    """Raise SignatureError unless every notification item carries a valid HMAC signature made
    with one of ``keys`` (hex)."""
    if not keys:
        raise SignatureError("no hmac_key is configured for this gateway account")
    if not items:
        raise SignatureError("no notification items")
    for index, item in enumerate(items):
        signature = (item.get("additionalData") or {}).get("hmacSignature")
        if not isinstance(signature, str) or not signature:
            raise SignatureError(f"notification item {index} has no additionalData.hmacSignature")
        if not any(_adyen_item_valid(item, key) for key in keys):
            raise SignatureError(f"notification item {index}: the HMAC signature does not match")


def _adyen_item_valid(item: dict, key: str) -> bool:
    try:
        return bool(is_valid_hmac_notification(item, key))
    except (binascii.Error, KeyError, TypeError, ValueError):  # a malformed item or a key that is not hex
        return False


def basic_auth_valid(*, header: str | None, username: str, password: str) -> bool:
    """Constant-time check of an ``Authorization: Basic ...`` header."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = f"{username}:{password}"
    return hmac.compare_digest(given.encode(), expected.encode())
