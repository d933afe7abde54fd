"""Money that moved, whichever path found out: a capture's allocations and its event, a pending
refund settled. Used by confirmation (an answer), operations (capture, refund) and gateway news.

Where the money goes is a write for a split payment (the vendors' allocations are recorded, and
what follows scheduled, through ``apps.payments.hooks``): it is done here, in the service step,
before the event that carries it is built (``apps.payments.events`` builders only read).
"""

from __future__ import annotations

from apps.ledger.services import EventSpec
from apps.payments import events
from apps.payments.hooks import splits_hooks
from apps.payments.models import PaymentAttempt, PaymentIntent, Refund
from apps.payments.services.ledger_events import record_event
from apps.payments.statemachine import refund_to


def capture_allocate(intent: PaymentIntent, amount: int, fee: int) -> list[dict]:
    """Who the captured money belongs to: the vendors of its split plan (net of commission and
    the fees they bear) and the platform, recorded by the split hooks; without a plan (or with no
    app splitting payments), the platform."""
    hooks = splits_hooks()
    if intent.has_splits and hooks is not None:
        return hooks.capture_allocate(payment_id=intent.id, amount=amount, fee=fee)
    return [{"account": "platform_revenue", "amount": amount}]


def refund_allocate(intent: PaymentIntent, refund_id: str, amount: int) -> list[dict]:
    """Who bears a refund: a split payment's vendors and commission in proportion (the unwind
    recorded by the split hooks); else the platform (``refunds``)."""
    hooks = splits_hooks()
    if intent.has_splits and hooks is not None:
        allocations = hooks.refund_allocate(payment_id=intent.id, refund_id=refund_id, amount=amount)
        if allocations is not None:
            return allocations
    return [{"account": "refunds", "amount": amount}]


def capture_event(intent: PaymentIntent, attempt: PaymentAttempt, amount: int, fee: int) -> EventSpec:
    """Allocate a capture (a write for a split payment), then build its ``ChargeCaptured``."""
    allocations = capture_allocate(intent, amount, fee)
    return events.charge_captured(intent, attempt, amount, fee, allocations)


def capture_record(intent: PaymentIntent, attempt: PaymentAttempt, amount: int, fee: int) -> None:
    """Allocate and record a capture, inside the caller's transaction (the payment locked)."""
    record_event(capture_event(intent, attempt, amount, fee))


def refund_succeeded_record(intent: PaymentIntent, refund: Refund) -> None:
    """Allocate a succeeded refund (a write for a split payment) and record its
    ``RefundSucceeded``, inside the caller's transaction (the payment locked, the refund saved)."""
    allocations = refund_allocate(intent, refund.id, refund.amount)
    record_event(events.refund_succeeded(intent, refund, allocations))


def refund_settle(
    intent: PaymentIntent, refund: Refund, *, succeeded: bool, reference: str, message: str
) -> None:
    """Inside the caller's transaction, with the refund and its payment locked: a pending refund
    becomes succeeded (posted) or failed (its reservation on the payment released), with its event."""
    if succeeded:
        refund_to(refund, Refund.Status.SUCCEEDED)
        refund.reference = reference[:100]
        refund.save()  # before its event, which snapshots it for webhooks
        refund_succeeded_record(intent, refund)
        return
    refund_to(refund, Refund.Status.FAILED)
    refund.failure_message = message[:500]
    refund.save()
    intent.amount_refunded -= refund.amount  # release the reservation
    intent.save(update_fields=["amount_refunded", "updated_at"])
    record_event(events.refund_failed(intent, refund, message))
