"""Adyen's webhooks (notifications): verified, then read as neutral news. All reading of Adyen's
notification shapes lives here; what changes is decided by the payments services (forward only,
``apps.payments.news``).

A request body is ``{"live": "false", "notificationItems": [{"NotificationRequestItem": {...}}]}``
(JSON webhooks carry one item, older integrations up to six); each item is one notification. Adyen
has no event id: an item is identified by ``eventCode:pspReference:success``, which is what Adyen
repeats when it redelivers. ``merchantReference`` is our attempt id (the payment's ``reference``;
for modifications the adapter sends ``<attempt>:capture`` and the like, or Adyen repeats the
payment's), ``pspReference`` the payment's id at Adyen, or the modification's with
``originalReference`` then the payment's. The answer is ``[accepted]``, or Adyen retries.

Verification: each item carries ``additionalData.hmacSignature``, base64 HMAC-SHA256 over
``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:
success`` with the hex HMAC key (``credentials["hmac_key"]``, one or a list, newest first); the
SDK's ``Adyen.util.is_valid_hmac_notification`` computes and compares it in constant time. Every
item of a batch must verify. Optionally (``credentials["webhook_username"]`` /
``["webhook_password"]``) the request's basic auth is checked first, as Adyen recommends.

News by event code (an item for another merchant account than the gateway account's is ignored):

- ``AUTHORISATION``: success -> authorised (captured when the payment captures automatically);
  failure -> declined. This is how an attempt whose answer was lost is resolved when Adyen learns
  the outcome later.
- ``CAPTURE`` -> captured; ``CAPTURE_FAILED`` (or CAPTURE with success false) -> the capture
  failed: nothing to move, or, if it was already recorded, a conflict for an operator.
- ``REFUND`` -> our refund settled, or a refund made in Adyen's Customer Area recorded;
  ``REFUND_FAILED`` (or REFUND with success false) -> our pending refund failed.
- ``CANCELLATION`` / ``TECHNICAL_CANCEL`` success -> the authorisation was voided, or for an
  attempt whose outcome was unknown: nothing was charged (the payment continues elsewhere).
- ``CHARGEBACK`` -> a dispute opened on the payment (one per payment at Adyen);
  ``CHARGEBACK_REVERSED`` -> won (posted back); ``SECOND_CHARGEBACK`` -> lost.

Anything else is stored and left alone.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping

from Adyen.util import is_valid_hmac_notification
from django.utils.dateparse import parse_datetime

from apps.payments.gateways.base import (
    CaptureFailedNews,
    ChargeNews,
    ChargeRef,
    DisputeNews,
    GatewayConfig,
    GatewayNews,
    GatewayResult,
    GatewayStatus,
    IgnoredNews,
    Notification,
    NotificationAnswer,
    NotificationFormatError,
    NotificationMatch,
    NotificationSignatureError,
    NotificationUnauthenticated,
    Outcome,
    RefundNews,
    RefundReport,
    RequestFailedNews,
)

ACCEPTED = "[accepted]"  # the answer Adyen expects, or it retries
CANCEL_CODES = ("CANCELLATION", "TECHNICAL_CANCEL")
# CHARGEBACK debits the merchant; CHARGEBACK_REVERSED gives it back (the defence won);
# SECOND_CHARGEBACK is final (lost). NOTIFICATION_OF_CHARGEBACK moves no money and is only stored.
CHARGEBACK_CODES = ("CHARGEBACK", "CHARGEBACK_REVERSED", "SECOND_CHARGEBACK")


# ----------------------------------------------------------------- verification


def parse_items(body: bytes) -> list[dict]:
    """The notification items of a body (not yet verified). Raises NotificationFormatError."""
    try:
        document = json.loads(body)
    except ValueError:
        raise NotificationFormatError("the body is not JSON") from None
    wrapped = document.get("notificationItems") if isinstance(document, dict) else None
    if not isinstance(wrapped, list) or not wrapped:
        raise NotificationFormatError("the body has no notificationItems")
    items = []
    for entry in wrapped:
        item = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise NotificationFormatError("every notification item must be a NotificationRequestItem object")
        items.append(item)
    return items


def hmac_verify(*, items: list[dict], keys: list[str]) -> None:
    """Raise NotificationSignatureError unless every notification item carries a valid HMAC
    signature made with one of ``keys`` (hex)."""
    if not keys:
        raise NotificationSignatureError("no hmac_key is configured for this gateway account")
    if not items:
        raise NotificationSignatureError("no notification items")
    for index, item in enumerate(items):
        signature = (item.get("additionalData") or {}).get("hmacSignature")
        if not isinstance(signature, str) or not signature:
            raise NotificationSignatureError(f"notification item {index} has no additionalData.hmacSignature")
        if not any(_item_valid(item, key) for key in keys):
            raise NotificationSignatureError(f"notification item {index}: the HMAC signature does not match")


def _item_valid(item: dict, key: str) -> bool:
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


def notifications(items: list[dict]) -> list[Notification]:
    """One Notification per verified item. Raises NotificationFormatError for an item without an
    event code or a pspReference."""
    found = []
    for item in items:
        code, psp = item.get("eventCode"), item.get("pspReference")
        if not isinstance(code, str) or not code or not isinstance(psp, str) or not psp:
            raise NotificationFormatError("a notification item needs an eventCode and a pspReference")
        success = str(item.get("success", "")).lower()
        occurred = item.get("eventDate")
        found.append(
            Notification(
                event_id=f"{code}:{psp}:{success}",
                type=code,
                payload=item,
                occurred_at=parse_datetime(occurred) if isinstance(occurred, str) else None,
            )
        )
    return found


class AdyenNotifications:
    """The webhook half of the ``adyen`` kind (``Notifications`` in ``base.py``)."""

    endpoint = True

    def __init__(self, config: GatewayConfig):
        self.config = config

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> list[Notification]:
        credentials = self.config.credentials or {}
        username = credentials.get("webhook_username")
        if username and not basic_auth_valid(
            header=headers.get("Authorization"),
            username=username,
            password=credentials.get("webhook_password", ""),
        ):
            raise NotificationUnauthenticated("basic authentication failed")
        items = parse_items(body)
        hmac_verify(items=items, keys=self.config.secrets("hmac_key"))
        return notifications(items)

    def notification_answer(self, received: list[tuple[Notification, bool]]) -> NotificationAnswer:
        return NotificationAnswer(ACCEPTED, content_type="text/plain")

    def parse_notification(self, notification: Notification) -> list[GatewayNews]:
        item: dict = notification.payload
        code = item.get("eventCode", "")
        merchant = (self.config.credentials or {}).get("merchant_account")
        if merchant and item.get("merchantAccountCode") not in (None, merchant):
            return [
                IgnoredNews(
                    f"ignored: for merchant account {item.get('merchantAccountCode')}, not {merchant}"
                )
            ]
        success = str(item.get("success", "")).lower() == "true"
        if code == "AUTHORISATION":
            return [_authorisation(item, success)]
        if code in ("CAPTURE", "CAPTURE_FAILED"):
            return [_capture(item, success and code == "CAPTURE")]
        if code in ("REFUND", "REFUND_FAILED"):
            return [_refund(item, success and code == "REFUND")]
        if code in CANCEL_CODES:
            return [_cancellation(item, success)]
        if code in CHARGEBACK_CODES and success:
            return [_chargeback(item, code)]
        return []

    def cancellations(self, *, attempt_id: str, reference: str | None) -> NotificationMatch:
        about_it: tuple[dict, ...] = (
            {"merchantReference": attempt_id},
            {"merchantReference__startswith": f"{attempt_id}:"},
        )
        if reference:
            about_it += ({"originalReference": reference},)
        return NotificationMatch(
            types=CANCEL_CODES,
            any_of=about_it,
            all_of={"success": "true"},
            said=f"attempt {attempt_id} was cancelled at Adyen since",
        )


# ----------------------------------------------------------------- news


def _our_id(item: dict) -> str | None:
    """Our attempt id from merchantReference (``pay_x_1`` or ``pay_x_1:capture``)."""
    reference = item.get("merchantReference")
    return reference.split(":")[0] if isinstance(reference, str) and reference else None


def _amount(item: dict) -> int:
    return int((item.get("amount") or {}).get("value") or 0)


def _reason(item: dict) -> str:
    return str(item.get("reason") or "no reason given")


def _payment_psp(item: dict) -> str | None:
    """The payment's pspReference: the item's own for AUTHORISATION, else originalReference."""
    if item.get("eventCode") == "AUTHORISATION":
        return item.get("pspReference") or None
    return item.get("originalReference") or None


def _charge(item: dict, not_ours: str) -> ChargeRef:
    return ChargeRef(attempt_id=_our_id(item), reference=_payment_psp(item), not_ours=not_ours)


def _authorisation(item: dict, success: bool) -> ChargeNews:
    psp = item.get("pspReference")
    charge = _charge(
        item, f"ignored: payment {psp} ({item.get('merchantReference')}) is not one of our attempts"
    )
    if not success:
        result = GatewayResult(
            Outcome.DECLINED_SOFT,
            GatewayStatus.DECLINED,
            reference=psp,
            decline_code="generic_decline",
            message=f"webhook AUTHORISATION refused: {_reason(item)}",
        )
        return ChargeNews(charge, result, label=f"Adyen payment {psp}", same_charge=True)
    amount = _amount(item)
    result = GatewayResult(
        Outcome.SUCCEEDED,
        GatewayStatus.AUTHORIZED,
        reference=psp,
        amount_authorized=amount,
        message="webhook AUTHORISATION",
    )
    return ChargeNews(
        charge,
        result,
        label=f"Adyen payment {psp}",
        same_charge=True,
        superseded_by_cancel=True,
        capture_follows=True,  # Adyen captures by itself when the payment asked for it
    )


def _capture(item: dict, success: bool) -> ChargeNews | CaptureFailedNews:
    charge = _charge(item, f"ignored: payment {item.get('originalReference')} is not one of our attempts")
    if not success:
        return CaptureFailedNews(charge, message=_reason(item))
    amount = _amount(item)
    result = GatewayResult(
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        reference=_payment_psp(item),
        amount_authorized=amount,
        amount_captured=amount,
        message="webhook CAPTURE",
    )
    return ChargeNews(charge, result)


def _refund(item: dict, success: bool) -> RefundNews:
    psp = item.get("pspReference") or ""
    report = RefundReport(
        refund_id=item.get("merchantReference"),
        reference=psp,
        succeeded=success,
        message="" if success else f"{item.get('eventCode')}: {_reason(item)}",
        amount=_amount(item),
    )
    return RefundNews(
        charge=_charge(item, f"ignored: payment {item.get('originalReference')} is not one of our attempts"),
        refunds=(report,),
        outside_reason="refunded at Adyen outside this platform",
    )


def _cancellation(item: dict, success: bool) -> ChargeNews | RequestFailedNews:
    code = item.get("eventCode") or ""
    charge = _charge(
        item, f"ignored: {code} for {item.get('merchantReference')} is not about one of our attempts"
    )
    if not success:
        return RequestFailedNews(charge, request=code, reason=_reason(item))
    result = GatewayResult(
        Outcome.GATEWAY_ERROR,
        GatewayStatus.CANCELED,
        reference=_payment_psp(item),
        message=f"webhook {code}: the authorisation was voided; nothing was charged",
    )
    return ChargeNews(charge, result)


def _chargeback(item: dict, code: str) -> DisputeNews:
    amount = item.get("amount") or {}
    return DisputeNews(
        charge=_charge(
            item, f"ignored: chargeback on {item.get('originalReference')}, not one of our attempts"
        ),
        reference=f"chargeback:{_payment_psp(item)}",  # one dispute per payment at Adyen
        amount=_amount(item),
        currency=str(amount.get("currency") or ""),
        reason=_reason(item),
        settled={"CHARGEBACK_REVERSED": "won", "SECOND_CHARGEBACK": "lost"}.get(code),
        opens=code == "CHARGEBACK",
        label=code,
    )
