"""The payments app's state machines (``apps.core.statemachine``): payment intents, attempts,
refunds, late charges and disputes. An illegal move raises ``IllegalTransition`` instead of
silently corrupting state; services move a row only through its ``<model>_to``."""

from __future__ import annotations

from apps.core.statemachine import IllegalTransition, StateMachine
from apps.payments.models import Dispute, LateCharge, PaymentAttempt, PaymentIntent, Refund

__all__ = [
    "ATTEMPT",
    "DISPUTE",
    "INTENT",
    "LATE_CHARGE",
    "REFUND",
    "IllegalTransition",
    "attempt_to",
    "dispute_to",
    "intent_to",
    "late_charge_to",
    "refund_to",
]

IS = PaymentIntent.Status
AS = PaymentAttempt.Status
RS = Refund.Status
LS = LateCharge.Status
DS = Dispute.Status

INTENT = StateMachine(
    {
        IS.REQUIRES_CONFIRMATION: {IS.PROCESSING, IS.CANCELED},
        IS.PROCESSING: {IS.PROCESSING, IS.REQUIRES_ACTION, IS.REQUIRES_CAPTURE, IS.SUCCEEDED, IS.FAILED},
        IS.REQUIRES_ACTION: {IS.PROCESSING, IS.CANCELED, IS.FAILED},
        IS.REQUIRES_CAPTURE: {IS.SUCCEEDED, IS.CANCELED},
        IS.FAILED: {IS.PROCESSING, IS.CANCELED},  # confirm again (e.g. a new card, a dunning retry)
        IS.SUCCEEDED: set(),
        IS.CANCELED: set(),
    },
    states=IS.values,
)

ATTEMPT = StateMachine(
    {
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
    },
    states=AS.values,
)

REFUND = StateMachine(
    {
        RS.PENDING: {RS.SUCCEEDED, RS.FAILED, RS.PENDING},
        RS.SUCCEEDED: set(),
        RS.FAILED: set(),
    },
    states=RS.values,
)

# A late charge is reversed at its gateway, or left to an operator when the gateway refuses.
LATE_CHARGE = StateMachine(
    {LS.REVERSING: {LS.REVERSED, LS.NEEDS_OPERATOR}, LS.REVERSED: set(), LS.NEEDS_OPERATOR: set()},
    states=LS.values,
)

# A dispute is settled once, as the processor reports it.
DISPUTE = StateMachine({DS.OPEN: {DS.WON, DS.LOST}, DS.WON: set(), DS.LOST: set()}, states=DS.values)


def intent_to(intent: PaymentIntent, target: str) -> None:
    INTENT.advance(intent, target)


def attempt_to(attempt: PaymentAttempt, target: str) -> None:
    ATTEMPT.advance(attempt, target)


def refund_to(refund: Refund, target: str) -> None:
    REFUND.advance(refund, target)


def late_charge_to(late: LateCharge, target: str) -> None:
    LATE_CHARGE.advance(late, target)


def dispute_to(dispute: Dispute, target: str) -> None:
    DISPUTE.advance(dispute, target)
