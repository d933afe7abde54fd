"""The gateway port. Every adapter (one module per processor) implements ``Gateway`` and speaks
only these types to the rest of the code; all translation of a processor's request/response
shapes and error codes lives inside its module.

Idempotency: every call carries a key derived from our attempt id (``pay_x_1``, and
``pay_x_1:capture``, ``re_y`` for refunds), and adapters must send it to the processor so a
retried call can never charge twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"  # authorised (and captured if asked)
    REQUIRES_ACTION = "requires_action"  # e.g. 3-D Secure; the customer must act
    DECLINED_SOFT = "declined_soft"  # the issuer may approve later or elsewhere
    DECLINED_HARD = "declined_hard"  # do not retry this card
    GATEWAY_ERROR = "gateway_error"  # down, 5xx, refused connection: nothing was charged
    UNKNOWN = "unknown"  # sent, but the answer was lost: the charge may exist


class GatewayStatus(enum.StrEnum):
    """What the processor says the charge is now (``retrieve`` tells the truth)."""

    AUTHORIZED = "authorized"  # held, not captured
    CAPTURED = "captured"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    CANCELED = "canceled"
    NOT_FOUND = "not_found"  # the processor has no charge for this attempt
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CardInfo:
    brand: str = "unknown"
    country: str = "US"
    funding: str = "credit"
    last4: str = "0000"


@dataclass(frozen=True)
class ChargeRequest:
    attempt_id: str  # our attempt id: the idempotency key and the processor-side reference
    amount: int  # minor units
    currency: str  # ISO 4217 upper case
    payment_method: str  # a token (pm_..., Adyen encrypted details), never card data
    capture: bool = True  # False: authorise only (manual capture)
    customer_reference: str | None = None
    description: str = ""
    connected_account: str | None = None  # Stripe-Account header for Connect
    off_session: bool = False
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayResult:
    outcome: Outcome
    status: GatewayStatus
    reference: str | None = None  # the processor's id (pi_..., pspReference, sim_...)
    amount_authorized: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0
    fee: int = 0  # processor fee in minor units, when the processor reports it
    decline_code: str | None = None
    advice_code: str | None = None  # try_again_later, do_not_try_again, confirm_card_data
    message: str = ""
    raw: dict = field(default_factory=dict)  # trimmed response kept for audit


class GatewayCallError(Exception):
    """Raised by adapters only for programming errors (bad config); processor failures are
    results (GATEWAY_ERROR / UNKNOWN), never exceptions."""


@dataclass(frozen=True)
class GatewayConfig:
    account_id: str  # our gateway account's name, e.g. "stripe_main"
    credentials: dict = field(default_factory=dict)  # decrypted: api keys, merchant account, hmac keys
    settings: dict = field(default_factory=dict)  # non-secret: base url, timeouts, simulator behaviour
    timeout_seconds: float = 10.0


class Gateway(Protocol):
    kind: str  # "simulator", "stripe", "adyen"
    # Whether ``retrieve`` can find an attempt (an adapter without a lookup sets it False): when it
    # can, an inconclusive ``retrieve`` means its answer was lost, not that nothing is known there.
    can_look_up: bool

    def authorize(self, request: ChargeRequest) -> GatewayResult:
        """Confirm a payment; capture too when ``request.capture``. Idempotent by attempt id."""
        ...

    def capture(
        self, *, attempt_id: str, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> GatewayResult:
        """Capture ``amount`` (partial allowed) of an authorisation."""
        ...

    def cancel(self, *, attempt_id: str, reference: str | None, idempotency_key: str) -> GatewayResult:
        """Void an authorisation (Adyen: technical cancel by reference when the outcome is unknown)."""
        ...

    def refund(
        self,
        *,
        attempt_id: str,
        reference: str,
        refund_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
    ) -> GatewayResult:
        """Refund ``amount`` of a captured charge; ``refund_id`` (re_...) is our reference."""
        ...

    def retrieve(self, *, attempt_id: str, reference: str | None) -> GatewayResult:
        """The processor's truth about an attempt, found by its reference or by our attempt id."""
        ...


class RefundLookup(Protocol):
    """Optional part of the port: adapters that can find a refund by our id implement it. The
    resolver asks before sending a refund again, because a processor honours an idempotency key
    only for a while (Stripe: 24 h) and a replay after that would refund twice."""

    def refund_retrieve(self, *, attempt_id: str, reference: str, refund_id: str) -> GatewayResult:
        """The processor's truth about our refund ``refund_id`` (re_...) of the charge
        ``reference``: SUCCEEDED (it exists, done or under way), DECLINED_HARD (it exists and
        failed), status NOT_FOUND (certainly none), or GATEWAY_ERROR / UNKNOWN (cannot tell)."""
        ...
