"""The events a payment records: one builder per event, each giving the event's type, stream,
payload and idempotency key (``EventSpec``).

Builders are pure: they read the rows they are given (and rows those point to) and write nothing.
Whatever an event needs that is itself a write (a split payment's capture allocations, a refund's
unwind: ``apps.payments.services.settlement``) is done by the service step first and handed in.

Recording them (the ledger, then the outbound announcement) is
``apps.payments.services.ledger_events``.
"""

from __future__ import annotations

from apps.ledger.services import EventSpec
from apps.payments.models import Dispute, LateCharge, PaymentAttempt, PaymentIntent, Refund

# What storefronts hear of (outbound webhooks, ``GET /api/v1/events``): the ledger event that
# records a change names the announcement, published in the same transaction, after the rows it
# snapshots are written.
OUTBOUND_EVENTS: dict[str, tuple[str, str]] = {
    "ChargeAuthorized": ("payment.requires_capture", "payment"),
    "AttemptRequiresAction": ("payment.requires_action", "payment"),
    "ChargeCaptured": ("payment.succeeded", "payment"),
    "PaymentFailed": ("payment.failed", "payment"),
    "PaymentCanceled": ("payment.canceled", "payment"),
    "RefundSucceeded": ("refund.succeeded", "refund"),
    "RefundFailed": ("refund.failed", "refund"),
}


def _spec(intent: PaymentIntent, event_type: str, key: str, payload: dict | None = None) -> EventSpec:
    """An event on the payment's stream; its key is unique within the payment."""
    return EventSpec(
        event_type=event_type,
        stream=intent.id,
        payload={"payment": intent.id, **(payload or {})},
        idempotency_key=f"{intent.id}:{key}",
    )


def round_prefix(intent: PaymentIntent) -> str:
    """The confirmation round in keys: empty when created confirmed, then ``r1:``, ``r2:``, ..."""
    number = int(intent.routing.get("round", 0))
    return f"r{number}:" if number else ""


# --------------------------------------------------------------------------- the payment


def payment_created(intent: PaymentIntent) -> EventSpec:
    return _spec(
        intent,
        "PaymentIntentCreated",
        "created",
        {"amount": intent.amount, "currency": intent.currency, "capture_method": intent.capture_method},
    )


def payment_failed(
    intent: PaymentIntent, *, attempt: PaymentAttempt | None = None, action: str = "", tried: int = 0
) -> EventSpec:
    """The payment failed: after ``attempt`` (the decline table's ``action``), or, with no
    attempt, because no gateway could take it after the ``tried`` ones of this round."""
    if attempt is None:
        return _spec(
            intent,
            "PaymentFailed",
            f"failed:{round_prefix(intent)}{tried}",
            {"code": intent.last_error.get("code")},
        )
    return _spec(intent, "PaymentFailed", f"{attempt.id}:failed", {"attempt": attempt.id, "action": action})


def payment_canceled(intent: PaymentIntent, reason: str) -> EventSpec:
    return _spec(intent, "PaymentCanceled", "canceled", {"reason": reason})


# --------------------------------------------------------------------------- attempts


def attempt_started(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    return _spec(
        intent,
        "AttemptStarted",
        f"{attempt.id}:started",
        {"attempt": attempt.id, "gateway_account": attempt.gateway_account.name},
    )


def attempt_requires_action(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    return _spec(intent, "AttemptRequiresAction", f"{attempt.id}:requires_action", {"attempt": attempt.id})


def attempt_declined(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    return _spec(
        intent,
        "AttemptDeclined",
        f"{attempt.id}:declined",
        {"attempt": attempt.id, "decline_code": attempt.decline_code, "advice_code": attempt.advice_code},
    )


def attempt_failed(intent: PaymentIntent, attempt: PaymentAttempt, *, canceled: bool = False) -> EventSpec:
    """The attempt ended with nothing charged: a gateway error, or ``canceled`` (closed at its
    gateway while it waited for the customer)."""
    key = f"{attempt.id}:canceled" if canceled else f"{attempt.id}:failed"
    return _spec(intent, "AttemptFailed", key, {"attempt": attempt.id})


def attempt_unknown(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    return _spec(
        intent, "AttemptUnknown", f"{attempt.id}:unknown:{attempt.resolve_count}", {"attempt": attempt.id}
    )


def charge_authorized(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    return _spec(
        intent,
        "ChargeAuthorized",
        f"{attempt.id}:authorized",
        {
            "attempt": attempt.id,
            "gateway_account": attempt.gateway_account.name,
            "amount": attempt.amount_authorized,
        },
    )


def charge_captured(
    intent: PaymentIntent, attempt: PaymentAttempt, amount: int, fee: int, allocations: list[dict]
) -> EventSpec:
    """A capture of ``amount`` (``fee`` to the processor), its money going to ``allocations``."""
    return _spec(
        intent,
        "ChargeCaptured",
        f"{attempt.id}:captured",
        {
            "attempt": attempt.id,
            "gateway_account": attempt.gateway_account.name,
            "amount": amount,
            "currency": intent.currency,
            "fee": fee,
            "allocations": allocations,
        },
    )


def authorization_voided(intent: PaymentIntent, attempt: PaymentAttempt) -> EventSpec:
    return _spec(intent, "AuthorizationVoided", f"{attempt.id}:voided", {"attempt": attempt.id})


# --------------------------------------------------------------------------- refunds


def refund_succeeded(intent: PaymentIntent, refund: Refund, allocations: list[dict]) -> EventSpec:
    """The money goes out through the gateway that took it, unwinding what the capture allocated
    (``allocations``)."""
    return _spec(
        intent,
        "RefundSucceeded",
        f"{refund.id}:succeeded",
        {
            "refund": refund.id,
            "gateway_account": refund.attempt.gateway_account.name,
            "amount": refund.amount,
            "currency": refund.currency,
            "allocations": allocations,
        },
    )


def refund_failed(intent: PaymentIntent, refund: Refund, message: str) -> EventSpec:
    return _spec(intent, "RefundFailed", f"{refund.id}:failed", {"refund": refund.id, "message": message})


# --------------------------------------------------------------------------- late charges


def _late_charge_payload(late: LateCharge) -> dict:
    return {
        "late_charge": late.id,
        "attempt": late.attempt_id,
        "gateway_account": late.gateway_account.name,
        "amount": late.amount,
        "currency": late.currency,
    }


def late_charge_found(intent: PaymentIntent, late: LateCharge) -> EventSpec:
    """Money a gateway took on an attempt we had closed: captured (with its fee) or authorised."""
    payload = _late_charge_payload(late)
    if late.captured:
        return _spec(
            intent, "LateChargeCaptured", f"{late.attempt_id}:late_captured", {**payload, "fee": late.fee}
        )
    return _spec(intent, "LateAuthorizationFound", f"{late.attempt_id}:late_authorized", payload)


def late_charge_reversed(intent: PaymentIntent, late: LateCharge) -> EventSpec:
    """A late charge given back: refunded (captured) or voided (authorised)."""
    payload = _late_charge_payload(late)
    if late.captured:
        return _spec(intent, "LateChargeRefunded", f"{late.attempt_id}:late_refunded", payload)
    return _spec(intent, "LateAuthorizationVoided", f"{late.attempt_id}:late_voided", payload)


# --------------------------------------------------------------------------- disputes


def _dispute_spec(dispute: Dispute, event_type: str, step: str) -> EventSpec:
    return EventSpec(
        event_type=event_type,
        stream=dispute.intent_id,
        payload={
            "payment": dispute.intent_id,
            "dispute": dispute.id,
            "gateway_account": dispute.gateway_account.name,
            "amount": dispute.amount,
            "currency": dispute.currency,
            "allocations": dispute.allocations,
        },
        idempotency_key=f"{dispute.intent_id}:dispute:{dispute.id}:{step}",
    )


def dispute_opened(dispute: Dispute) -> EventSpec:
    return _dispute_spec(dispute, "DisputeOpened", "opened")


def dispute_closed(dispute: Dispute) -> EventSpec:
    """``DisputeWon`` or ``DisputeLost``, by the dispute's (settled) status."""
    won = dispute.status == Dispute.Status.WON
    return _dispute_spec(dispute, "DisputeWon" if won else "DisputeLost", dispute.status)
