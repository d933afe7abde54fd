"""Adyen notifications -> our payments. All reading of Adyen's notification shapes lives here; what
changes is decided by the payments services (forward only).

A request body is ``{"live": "false", "notificationItems": [{"NotificationRequestItem": {...}}]}``
(JSON webhooks carry one item, older integrations up to six); each item is one event. Adyen has no
event id: an item is identified by ``eventCode:pspReference:success``, which is what Adyen repeats
when it redelivers. ``merchantReference`` is our attempt id (the payment's ``reference``; for
modifications the adapter sends ``<attempt>:capture`` and the like, or Adyen repeats the payment's),
``pspReference`` the payment's id at Adyen, or the modification's with ``originalReference`` then
the payment's.

Applied event codes:

- ``AUTHORISATION``: success -> authorised (captured when the payment captures automatically, as
  the adapter reports it); failure -> declined. This is how an attempt whose answer was lost is
  resolved when Adyen learns the outcome later.
- ``CAPTURE`` -> captured; ``CAPTURE_FAILED`` (or CAPTURE with success false) -> nothing to move,
  or, if the capture was already recorded, a conflict for an operator (see the payments service).
- ``REFUND`` -> our refund settled, or a refund made in Adyen's Customer Area recorded;
  ``REFUND_FAILED`` (or REFUND with success false) -> our pending refund failed.
- ``CANCELLATION`` / ``TECHNICAL_CANCEL`` success -> the authorisation was voided, or for an
  attempt whose outcome was unknown: nothing was charged (the payment continues elsewhere).
- ``CHARGEBACK`` -> a dispute opened on the payment (one per payment at Adyen), borne by the
  platform or a split payment's vendors; ``CHARGEBACK_REVERSED`` -> won (posted back);
  ``SECOND_CHARGEBACK`` -> lost.

Anything else is stored and left alone.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import Q
from django.utils.dateparse import parse_datetime

from apps.payments.gateways.base import GatewayResult, GatewayStatus, Outcome
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent
from apps.payments.services import (
    GatewayTruthConflict,
    payment_attempt_apply_gateway_truth,
    payment_attempt_capture_failed,
    payment_refund_apply_gateway_truth,
    payment_refund_record_external,
)
from apps.webhooks.events import EventFormatError, Notification
from apps.webhooks.models import InboundEvent
from apps.webhooks.selectors import attempt_for_event, event_received, refund_for_event

ACCEPTED = "[accepted]"  # the answer Adyen expects, or it retries
CANCEL_CODES = ["CANCELLATION", "TECHNICAL_CANCEL"]
# CHARGEBACK debits the merchant; CHARGEBACK_REVERSED gives it back (the defence won);
# SECOND_CHARGEBACK is final (lost). NOTIFICATION_OF_CHARGEBACK moves no money and is only stored.
CHARGEBACK_CODES = ["CHARGEBACK", "CHARGEBACK_REVERSED", "SECOND_CHARGEBACK"]


def parse_items(body: bytes) -> list[dict]:
    """The notification items of a body (not yet verified). Raises EventFormatError."""
    try:
        document = json.loads(body)
    except ValueError:
        raise EventFormatError("the body is not JSON") from None
    wrapped = document.get("notificationItems") if isinstance(document, dict) else None
    if not isinstance(wrapped, list) or not wrapped:
        raise EventFormatError("the body has no notificationItems")
    items = []
    for entry in wrapped:
        item = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict):
            raise EventFormatError("every notification item must be a NotificationRequestItem object")
        items.append(item)
    return items


def notifications(items: list[dict]) -> list[Notification]:
    """One Notification per verified item. Raises EventFormatError for an item without an event
    code or a pspReference."""
    found = []
    for item in items:
        code, psp = item.get("eventCode"), item.get("pspReference")
        if not isinstance(code, str) or not code or not isinstance(psp, str) or not psp:
            raise EventFormatError("a notification item needs an eventCode and a pspReference")
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


def apply(event: InboundEvent) -> str:
    """Idempotent: apply one stored Adyen notification item to our payments. Returns what it did."""
    item: dict[str, Any] = event.payload
    account = event.gateway_account
    code = item.get("eventCode", "")
    merchant = account.credentials.get("merchant_account")
    if merchant and item.get("merchantAccountCode") not in (None, merchant):
        return f"ignored: for merchant account {item.get('merchantAccountCode')}, not {merchant}"
    success = str(item.get("success", "")).lower() == "true"
    if code == "AUTHORISATION":
        return _authorisation(account, item, success)
    if code in ("CAPTURE", "CAPTURE_FAILED"):
        return _capture(account, item, success and code == "CAPTURE")
    if code in ("REFUND", "REFUND_FAILED"):
        return _refund(account, item, success and code == "REFUND")
    if code in CANCEL_CODES:
        return _cancellation(account, item, success)
    if code in CHARGEBACK_CODES and success:
        return _chargeback(account, item, code)
    return f"ignored: {code} is not applied to payments"


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


def _attempt(account: GatewayAccount, item: dict) -> PaymentAttempt | None:
    return attempt_for_event(account=account, attempt_id=_our_id(item), reference=_payment_psp(item))


def _authorisation(account: GatewayAccount, item: dict, success: bool) -> str:
    attempt = _attempt(account, item)
    psp = item.get("pspReference")
    if attempt is None:
        return f"ignored: payment {psp} ({item.get('merchantReference')}) is not one of our attempts"
    if attempt.reference and attempt.reference != psp:
        raise GatewayTruthConflict(
            f"Adyen reports payment {psp} for attempt {attempt.id}, whose payment is {attempt.reference}"
        )
    if not success:
        result = GatewayResult(
            Outcome.DECLINED_SOFT,
            GatewayStatus.DECLINED,
            reference=psp,
            decline_code="generic_decline",
            message=f"webhook AUTHORISATION refused: {_reason(item)}",
        )
        return payment_attempt_apply_gateway_truth(attempt_id=attempt.pk, result=result)
    cancelled = _cancelled_since(account, attempt, psp)
    if cancelled:
        return cancelled
    captured = attempt.intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC
    amount = _amount(item)
    result = GatewayResult(
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED if captured else GatewayStatus.AUTHORIZED,
        reference=psp,
        amount_authorized=amount,
        amount_captured=amount if captured else 0,
        message="webhook AUTHORISATION",
    )
    return payment_attempt_apply_gateway_truth(attempt_id=attempt.pk, result=result)


def _cancelled_since(account: GatewayAccount, attempt: PaymentAttempt, psp: str | None) -> str | None:
    """An authorisation reported for an attempt closed here after Adyen confirmed its cancellation
    is older news than the cancellation (not a conflict)."""
    if attempt.status not in (PaymentAttempt.Status.FAILED, PaymentAttempt.Status.CANCELED):
        return None
    about_it = Q(payload__merchantReference=attempt.id) | Q(
        payload__merchantReference__startswith=f"{attempt.id}:"
    )
    if psp:
        about_it |= Q(payload__originalReference=psp)
    cancel = event_received(account=account, types=CANCEL_CODES, where=about_it, payload__success="true")
    if cancel is None:
        return None
    return f"older news: attempt {attempt.id} was cancelled at Adyen since ({cancel.event_id})"


def _capture(account: GatewayAccount, item: dict, success: bool) -> str:
    attempt = _attempt(account, item)
    if attempt is None:
        return f"ignored: payment {item.get('originalReference')} is not one of our attempts"
    if not success:
        return payment_attempt_capture_failed(attempt_id=attempt.pk, message=_reason(item))
    amount = _amount(item)
    result = GatewayResult(
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        reference=_payment_psp(item),
        amount_authorized=amount,
        amount_captured=amount,
        message="webhook CAPTURE",
    )
    return payment_attempt_apply_gateway_truth(attempt_id=attempt.pk, result=result)


def _refund(account: GatewayAccount, item: dict, success: bool) -> str:
    attempt = _attempt(account, item)
    psp = item.get("pspReference") or ""
    if attempt is None:
        return f"ignored: payment {item.get('originalReference')} is not one of our attempts"
    refund = refund_for_event(attempt=attempt, refund_id=item.get("merchantReference"), reference=psp)
    if refund is not None:
        return payment_refund_apply_gateway_truth(
            refund_id=refund.pk,
            succeeded=success,
            reference=psp,
            message="" if success else f"{item.get('eventCode')}: {_reason(item)}",
        )
    if not success:
        return f"ignored: refund {psp} failed and is not one of ours"
    return payment_refund_record_external(
        attempt_id=attempt.pk,
        amount=_amount(item),
        reference=psp,
        reason="refunded at Adyen outside this platform",
    )


def _cancellation(account: GatewayAccount, item: dict, success: bool) -> str:
    attempt = _attempt(account, item)
    code = item.get("eventCode")
    if attempt is None:
        return f"ignored: {code} for {item.get('merchantReference')} is not about one of our attempts"
    if not success:
        return f"recorded: {code} of attempt {attempt.id} failed ({_reason(item)}); nothing changed"
    result = GatewayResult(
        Outcome.GATEWAY_ERROR,
        GatewayStatus.CANCELED,
        reference=_payment_psp(item),
        message=f"webhook {code}: the authorisation was voided; nothing was charged",
    )
    return payment_attempt_apply_gateway_truth(attempt_id=attempt.pk, result=result)


def _chargeback(account: GatewayAccount, item: dict, code: str) -> str:
    from apps.payments.disputes import DisputeError, dispute_close, dispute_open
    from apps.payments.models import Dispute

    attempt = _attempt(account, item)
    if attempt is None:
        return f"ignored: chargeback on {item.get('originalReference')}, not one of our attempts"
    reference = f"chargeback:{_payment_psp(item)}"
    amount = item.get("amount") or {}
    if code == "CHARGEBACK":
        try:
            dispute = dispute_open(
                attempt=attempt,
                reference=reference,
                amount=_amount(item),
                currency=str(amount.get("currency") or ""),
                reason=_reason(item),
            )
        except DisputeError as exc:
            raise GatewayTruthConflict(str(exc)) from None
        return f"dispute {dispute.id} opened for {dispute.amount} {dispute.currency}"
    recorded = Dispute.objects.filter(gateway_account=account, reference=reference).first()
    if recorded is None:
        raise GatewayTruthConflict(f"{code} for {reference}, but no chargeback was recorded")
    return dispute_close(dispute=recorded, won=code == "CHARGEBACK_REVERSED")
