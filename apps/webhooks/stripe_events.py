"""Stripe events -> our payments. All reading of Stripe's event shapes lives here; what changes
is decided by the payments services (forward only).

Applied types (``data.object`` is the object as it was when the event happened):

- ``payment_intent.succeeded`` -> captured; ``payment_intent.amount_capturable_updated`` ->
  authorised; ``payment_intent.payment_failed`` -> declined (soft or hard as the adapter decides);
  ``payment_intent.canceled`` -> voided, or for an attempt whose outcome was unknown: nothing was
  charged. Matched to our attempt by ``metadata.attempt_id`` (the adapter sends it), else by the
  PaymentIntent id kept in ``PaymentAttempt.reference``.
- ``charge.refunded``: each refund we made (``metadata.refund_id``) is settled as Stripe reports
  it, and refunds made outside our API (the dashboard) are recorded from the charge's running total
  of refunded captured money, so an older event (a smaller total) records nothing.
- ``account.updated`` (Connect): the vendor with that connected account gets Stripe's status,
  flags and requirements (``vendor_account_apply``: held transfers are released once it can be
  paid, and ``vendor.updated`` is announced).
- ``payout.paid`` / ``payout.failed`` / ``payout.canceled`` (Connect, from the vendor's account):
  settle our payout (a failed one's money returns to the vendor's available balance).
- ``charge.dispute.created`` opens a dispute on our payment (the amount leaves clearing, borne by
  the platform or a split payment's vendors); ``charge.dispute.closed`` settles it: ``won`` posts
  it back, ``lost`` leaves it.

Every other type is stored and left alone.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from apps.payments.gateways.base import GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.stripe import _charge_amounts, decline_outcome, split_reference
from apps.payments.models import GatewayAccount, PaymentAttempt
from apps.payments.services import (
    GatewayTruthConflict,
    payment_attempt_apply_gateway_truth,
    payment_refund_apply_gateway_truth,
    payment_refund_record_external,
)
from apps.webhooks.events import EventFormatError, Notification
from apps.webhooks.models import InboundEvent
from apps.webhooks.selectors import attempt_for_event, event_received, refund_for_event

INTENT_TYPES = (
    "payment_intent.succeeded",
    "payment_intent.amount_capturable_updated",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
)


def parse(body: bytes) -> Notification:
    """The event in a verified body. Raises EventFormatError if it is not a Stripe event."""
    try:
        event = json.loads(body)
    except ValueError:
        raise EventFormatError("the body is not JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise EventFormatError("the body is not a Stripe event")
    data = event.get("data")
    if (
        not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise EventFormatError("a Stripe event needs an id, a type and data.object")
    created = event.get("created")
    occurred = datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) else None
    return Notification(event_id=event["id"], type=event["type"], payload=event, occurred_at=occurred)


def apply(event: InboundEvent) -> str:
    """Idempotent: apply one stored Stripe event to our payments. Returns what it did."""
    payload: dict[str, Any] = event.payload
    kind = payload["type"]
    obj = payload["data"]["object"]
    account = event.gateway_account
    connected = payload.get("account") or None
    if kind in INTENT_TYPES:
        return _apply_intent(account, kind, obj, connected)
    if kind == "charge.refunded":
        return _apply_refunded(account, obj)
    if kind == "account.updated":
        return _apply_account(obj)
    if kind in ("payout.paid", "payout.failed", "payout.canceled"):
        return _apply_payout(kind, obj, connected)
    if kind in ("charge.dispute.created", "charge.dispute.closed"):
        return _apply_dispute(account, kind, obj)
    return f"ignored: {kind} is not applied to payments"


def _apply_intent(account: GatewayAccount, kind: str, intent: dict, connected: str | None) -> str:
    intent_id = str(intent.get("id") or "")
    attempt = attempt_for_event(
        account=account, attempt_id=(intent.get("metadata") or {}).get("attempt_id"), reference=intent_id
    )
    if attempt is None:
        return f"ignored: PaymentIntent {intent_id} is not one of our attempts"
    if attempt.reference and split_reference(attempt.reference)[1] != intent_id:
        raise GatewayTruthConflict(
            f"PaymentIntent {intent_id} names attempt {attempt.id}, whose PaymentIntent is {attempt.reference}"
        )
    reference = f"{connected}/{intent_id}" if connected else intent_id
    if kind in ("payment_intent.succeeded", "payment_intent.amount_capturable_updated"):
        stale = _stale_success(account, attempt, intent_id)
        if stale:
            return stale
    return payment_attempt_apply_gateway_truth(attempt_id=attempt.pk, result=_news(kind, intent, reference))


def _news(kind: str, intent: dict, reference: str | None) -> GatewayResult:
    amount = int(intent.get("amount") or 0)
    if kind == "payment_intent.succeeded":
        charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else None
        captured, _, fee = _charge_amounts(charge)
        return GatewayResult(
            Outcome.SUCCEEDED,
            GatewayStatus.CAPTURED,
            reference=reference,
            amount_authorized=amount,
            amount_captured=int(intent.get("amount_received") or 0) or captured or amount,
            fee=fee,
            message="webhook payment_intent.succeeded",
        )
    if kind == "payment_intent.amount_capturable_updated":
        return GatewayResult(
            Outcome.SUCCEEDED,
            GatewayStatus.AUTHORIZED,
            reference=reference,
            amount_authorized=int(intent.get("amount_capturable") or 0) or amount,
            message="webhook payment_intent.amount_capturable_updated",
        )
    if kind == "payment_intent.payment_failed":
        error = intent.get("last_payment_error") or {}
        decline_code = error.get("decline_code") or error.get("code") or "card_declined"
        advice_code = error.get("advice_code")
        return GatewayResult(
            decline_outcome(decline_code, advice_code),
            GatewayStatus.DECLINED,
            reference=reference,
            decline_code=decline_code,
            advice_code=advice_code,
            message=f"webhook payment_intent.payment_failed: {error.get('message') or decline_code}",
        )
    # payment_intent.canceled: voided, or never charged; either way no money moved.
    return GatewayResult(
        Outcome.GATEWAY_ERROR,
        GatewayStatus.CANCELED,
        reference=reference,
        message=f"webhook payment_intent.canceled ({intent.get('cancellation_reason') or 'no reason'})",
    )


def _stale_success(account: GatewayAccount, attempt: PaymentAttempt, intent_id: str) -> str | None:
    """News of an authorisation for an attempt closed here after its PaymentIntent was cancelled
    is older than the cancellation: nothing to do (not a conflict)."""
    if attempt.status not in (PaymentAttempt.Status.FAILED, PaymentAttempt.Status.CANCELED):
        return None
    canceled = event_received(
        account=account, types=["payment_intent.canceled"], payload__data__object__id=intent_id
    )
    if canceled is None:
        return None
    return f"older news: PaymentIntent {intent_id} was canceled since ({canceled.event_id})"


def _apply_refunded(account: GatewayAccount, charge: dict) -> str:
    intent_id = charge.get("payment_intent")
    attempt = attempt_for_event(
        account=account,
        attempt_id=(charge.get("metadata") or {}).get("attempt_id"),
        reference=intent_id if isinstance(intent_id, str) else None,
    )
    if attempt is None:
        return f"ignored: charge {charge.get('id')} is not one of our attempts"
    done = []
    for stripe_refund in (charge.get("refunds") or {}).get("data") or []:
        ours = (stripe_refund.get("metadata") or {}).get("refund_id")
        refund = refund_for_event(attempt=attempt, refund_id=ours, reference=stripe_refund.get("id"))
        status = stripe_refund.get("status")
        if refund is None or status not in ("succeeded", "pending", "failed", "canceled"):
            continue
        done.append(
            payment_refund_apply_gateway_truth(
                refund_id=refund.pk,
                succeeded=status in ("succeeded", "pending"),
                reference=stripe_refund.get("id") or "",
                message=stripe_refund.get("failure_reason") or status,
            )
        )
    # What Stripe has refunded beyond what we know of (ours, pending or not, and refunds already
    # recorded) was refunded outside our API; the service works it out under the payment's lock
    # from the running total, so a repeat or an older event (a smaller total) records nothing.
    _, refunded_total, _ = _charge_amounts(charge)
    if refunded_total > 0:
        done.append(
            payment_refund_record_external(
                attempt_id=attempt.pk,
                refunded_total=refunded_total,
                reference=f"{charge.get('id')}:refunded:{refunded_total}",
                reason="refunded at Stripe outside this platform",
            )
        )
    return "; ".join(done) or f"charge {charge.get('id')}: refunds already recorded"


def _apply_account(obj: dict) -> str:
    from apps.vendors.connect import account_from_stripe
    from apps.vendors.models import Vendor
    from apps.vendors.services import vendor_account_apply

    account_id = str(obj.get("id") or "")
    vendor = Vendor.objects.filter(stripe_account_id=account_id).first()
    if vendor is None:
        return f"ignored: account {account_id} is not one of our vendors"
    before = vendor.status
    vendor = vendor_account_apply(vendor=vendor, account=account_from_stripe(obj))
    return f"vendor {vendor.id}: {before} -> {vendor.status}"


def _apply_payout(kind: str, obj: dict, connected: str | None) -> str:
    from apps.vendors.funds import payout_settle
    from apps.vendors.models import Payout

    payout = Payout.objects.filter(stripe_payout_id=str(obj.get("id") or "")).select_related("vendor").first()
    if payout is None or (connected and payout.vendor.stripe_account_id != connected):
        return f"ignored: payout {obj.get('id')} is not one of ours"
    message = obj.get("failure_message") or obj.get("failure_code") or kind
    return f"payout {payout.id}: " + payout_settle(
        payout_id=payout.id, paid=kind == "payout.paid", message=str(message)
    )


def _apply_dispute(account: GatewayAccount, kind: str, dispute: dict) -> str:
    from apps.payments.disputes import dispute_close, dispute_open
    from apps.payments.models import Dispute

    intent_id = dispute.get("payment_intent")
    attempt = attempt_for_event(
        account=account, attempt_id=None, reference=intent_id if isinstance(intent_id, str) else None
    )
    if attempt is None:
        return f"ignored: dispute {dispute.get('id')} is not on one of our payments"
    opened = dispute_open(
        attempt=attempt,
        reference=str(dispute.get("id") or ""),
        amount=int(dispute.get("amount") or 0),
        currency=str(dispute.get("currency") or ""),
        reason=str(dispute.get("reason") or ""),
    )
    if kind == "charge.dispute.closed" and dispute.get("status") in ("won", "lost"):
        return dispute_close(dispute=opened, won=dispute.get("status") == "won")
    if opened.status != Dispute.Status.OPEN:
        return f"dispute {opened.id} already {opened.status}"
    return f"dispute {opened.id} opened for {opened.amount} {opened.currency}"
