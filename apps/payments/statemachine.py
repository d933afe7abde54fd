"""Explicit state machines: an illegal transition raises instead of silently corrupting state."""

from __future__ import annotations

from apps.payments.models import PaymentAttempt, PaymentIntent, Refund

IS = PaymentIntent.Status
AS = PaymentAttempt.Status
RS = Refund.Status

INTENT_TRANSITIONS: dict[str, set[str]] = {
    IS.REQUIRES_CONFIRMATION: {IS.PROCESSING, IS.CANCELED},
    IS.PROCESSING: {IS.PROCESSING, IS.REQUIRES_ACTION, IS.REQUIRES_CAPTURE, IS.SUCCEEDED, IS.FAILED},
    IS.REQUIRES_ACTION: {IS.PROCESSING, IS.CANCELED, IS.FAILED},
    IS.REQUIRES_CAPTURE: {IS.SUCCEEDED, IS.CANCELED},
    IS.FAILED: {IS.PROCESSING, IS.CANCELED},  # confirm again (e.g. a new card, a dunning retry)
    IS.SUCCEEDED: set(),
    IS.CANCELED: set(),
}

ATTEMPT_TRANSITIONS: dict[str, set[str]] = {
    AS.PENDING: {
        AS.AUTHORIZED,
        AS.CAPTURED,
        AS.REQUIRES_ACTION,
        AS.DECLINED,
        AS.FAILED,
        AS.UNKNOWN,
        AS.CANCELED,
    },
    AS.UNKNOWN: {
        AS.AUTHORIZED,
        AS.CAPTURED,
        AS.REQUIRES_ACTION,  # its answer was lost; the gateway says it waits for the customer
        AS.DECLINED,
        AS.FAILED,
        AS.CANCELED,
        AS.UNKNOWN,
    },
    AS.AUTHORIZED: {AS.CAPTURED, AS.CANCELED},
    AS.REQUIRES_ACTION: {AS.AUTHORIZED, AS.CAPTURED, AS.DECLINED, AS.CANCELED},
    AS.CAPTURED: set(),
    AS.DECLINED: set(),
    AS.FAILED: set(),
    AS.CANCELED: set(),
}

REFUND_TRANSITIONS: dict[str, set[str]] = {
    RS.PENDING: {RS.SUCCEEDED, RS.FAILED, RS.PENDING},
    RS.SUCCEEDED: set(),
    RS.FAILED: set(),
}


class IllegalTransition(Exception):
    def __init__(self, obj: object, current: str, target: str):
        super().__init__(
            f"{type(obj).__name__} {getattr(obj, 'pk', '?')} cannot go from {current} to {target}"
        )
        self.current = current
        self.target = target


def _move(obj, table: dict[str, set[str]], target: str) -> None:
    current = obj.status
    if target not in table.get(current, set()):
        raise IllegalTransition(obj, current, target)
    obj.status = target


def intent_to(intent: PaymentIntent, target: str) -> None:
    _move(intent, INTENT_TRANSITIONS, target)


def attempt_to(attempt: PaymentAttempt, target: str) -> None:
    _move(attempt, ATTEMPT_TRANSITIONS, target)


def refund_to(refund: Refund, target: str) -> None:
    _move(refund, REFUND_TRANSITIONS, target)
