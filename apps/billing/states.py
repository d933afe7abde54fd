"""The billing app's state machines (``apps.core.statemachine``): subscriptions, invoices and
invoice attempts. An illegal move raises BillingError (``subscription_unexpected_state`` /
``invoice_unexpected_state``, a 409 in the API) and changes nothing; services move a row only
through its ``<model>_to``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.billing.errors import BillingError
from apps.billing.models import Invoice, InvoiceAttempt, Subscription
from apps.core.statemachine import StateMachine

SS, IS, AS = Subscription.Status, Invoice.Status, InvoiceAttempt.Status


def _refused(kind: str) -> Callable[[Any, str, str], BillingError]:
    def error(obj: Any, current: str, target: str) -> BillingError:
        return BillingError(
            f"{kind} {obj.id} is {current}; it cannot become {target}", code=f"{kind}_unexpected_state"
        )

    return error


# trialing -> active -> past_due -> unpaid | canceled; paused and resumed by the customer.
SUBSCRIPTION = StateMachine(
    {
        SS.TRIALING: {SS.ACTIVE, SS.PAST_DUE, SS.CANCELED, SS.PAUSED},
        SS.ACTIVE: {SS.PAST_DUE, SS.CANCELED, SS.PAUSED},
        SS.PAST_DUE: {SS.ACTIVE, SS.UNPAID, SS.CANCELED},
        SS.UNPAID: {SS.ACTIVE, SS.CANCELED},
        SS.PAUSED: {SS.ACTIVE, SS.CANCELED},
        SS.CANCELED: set(),
    },
    states=SS.values,
    error=_refused("subscription"),
)

# draft -> open -> paid | uncollectible | void. A payment captured after its invoice was voided
# or given up on is money received all the same: the invoice is recorded paid (operators see it).
INVOICE = StateMachine(
    {
        IS.DRAFT: {IS.OPEN, IS.VOID},
        IS.OPEN: {IS.PAID, IS.UNCOLLECTIBLE, IS.VOID},
        IS.UNCOLLECTIBLE: {IS.PAID, IS.VOID},
        IS.PAID: set(),
        IS.VOID: {IS.PAID},
    },
    states=IS.values,
    error=_refused("invoice"),
)

# One try at collecting an invoice: settled once, from what its payment says.
INVOICE_ATTEMPT = StateMachine(
    {AS.PROCESSING: {AS.SUCCEEDED, AS.FAILED}, AS.SUCCEEDED: set(), AS.FAILED: set()},
    states=AS.values,
    error=_refused("invoice_attempt"),
)


def subscription_to(sub: Subscription, target: str) -> None:
    SUBSCRIPTION.advance(sub, target)


def invoice_to(inv: Invoice, target: str) -> None:
    INVOICE.advance(inv, target)


def invoice_attempt_to(attempt: InvoiceAttempt, target: str) -> None:
    INVOICE_ATTEMPT.advance(attempt, target)
