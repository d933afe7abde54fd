"""The gateway port. Every processor is one package, ``apps/payments/gateways/<kind>/``, whose
adapter implements ``Gateway`` (the calls: authorise, capture, cancel, refund, retrieve) and whose
``webhooks`` module implements ``Notifications`` (verifying the processor's webhooks and reading
them as the neutral news below). Both speak only these types to the rest of the code: all
translation of a processor's request, response and notification shapes and of its error codes
lives inside its package. ``registry.py`` names the packages.

Idempotency: every call carries a key derived from our attempt id (``pay_x_1``, and
``pay_x_1:capture``, ``re_y`` for refunds), and adapters must send it to the processor so a
retried call can never charge twice.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from apps.payments.gateways.connect import ConnectAccount


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
    # Merchant-initiated (renewals, dunning, a charge the customer is not there for): Stripe
    # ``off_session``, Adyen ``shopperInteraction: ContAuth``. ``recurring`` says it is a scheduled
    # charge of a subscription (Adyen ``recurringProcessingModel: Subscription``; otherwise
    # ``UnscheduledCardOnFile``).
    off_session: bool = False
    recurring: bool = False
    # Save the card at the processor while charging it, for later use: "off_session" (charged
    # later without the customer: Stripe ``setup_future_usage=off_session``, Adyen
    # ``storePaymentMethod`` with ``recurringProcessingModel``) or "on_session". The processor's
    # credential for it comes back as ``GatewayResult.saved``.
    setup_future_usage: str | None = None
    # On a merchant-initiated charge: the card network's transaction id of the first
    # customer-initiated charge of this card (from any processor), passed where the processor's
    # API takes it (Stripe ``payment_method_options.card.mit_exemption.network_transaction_id``,
    # Adyen ``additionalData.networkTxReference``), so the issuer links the charge to the
    # customer's consent.
    network_transaction_id: str | None = None
    metadata: dict = field(default_factory=dict)
    # When the payment's method is ours (``paym_...``): this gateway account's credential for it
    # (``payment_method`` is then its "reference"; e.g. Adyen's also holds "shopper_reference").
    credential: dict | None = None
    # Where the processor sends the customer back after authenticating (3-D Secure): the
    # payment's ``return_url`` with ``payment=<pay_id>`` in its query (Stripe ``return_url``, Adyen
    # ``returnUrl``). None: the customer is not redirected (no page to come back to).
    return_url: str | None = None


@dataclass(frozen=True)
class SavedMethod:
    """A processor's answer to saving a payment method (``MethodSaving.save_method``): its own
    reference for the method (what later charges send) and the card's display details; or,
    when ``ok`` is False, why not (``code``, ``message``)."""

    ok: bool
    reference: str = ""
    extra: dict = field(default_factory=dict)  # more the processor needs to charge it later
    card: CardInfo | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    fingerprint: str = ""
    # The card network's id of the customer-initiated transaction that saved it, when the
    # processor reports one (Stripe ``network_transaction_id``, Adyen ``networkTxReference``).
    network_transaction_id: str = ""
    code: str = ""  # when not ok: e.g. "resource_missing", "card_declined", "authentication_required", "gateway_error"
    message: str = ""


class MethodSaving(Protocol):
    """Optional part of the gateway port: save a processor's one-off token as a method it can
    charge again, with the customer's consent to later merchant-initiated charges (the
    simulator's tokenize; Stripe: a confirmed SetupIntent with ``usage=off_session``; Adyen: a
    zero-value authorisation with ``storePaymentMethod``). ``idempotency_key`` is derived from our
    id for the method being saved, so a retried save saves once."""

    def save_method(
        self, *, token: str, customer_reference: str | None, idempotency_key: str = ""
    ) -> SavedMethod: ...


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
    # The card network's transaction id, when the processor reports one (kept from a
    # customer-initiated charge to pass on later merchant-initiated ones).
    network_transaction_id: str = ""
    # When the request asked ``setup_future_usage`` and the processor saved the card: its
    # credential for it (``SavedMethod.reference`` and ``extra``) and the card's details.
    saved: SavedMethod | None = None
    # REQUIRES_ACTION: the page the customer is sent to (the issuer's 3-D Secure challenge, or the
    # processor's page in front of it), opened with GET; "" when the processor gave none we can
    # redirect to (e.g. it wants its own SDK in the page).
    action_url: str = ""


class GatewayCallError(Exception):
    """Raised by adapters only for programming errors (bad config); processor failures are
    results (GATEWAY_ERROR / UNKNOWN), never exceptions."""


@dataclass(frozen=True)
class GatewayConfig:
    account_id: str  # our gateway account's name, e.g. "stripe_main"
    credentials: dict = field(default_factory=dict)  # decrypted: api keys, merchant account, hmac keys
    settings: dict = field(default_factory=dict)  # non-secret: base url, timeouts, simulator behaviour
    timeout_seconds: float = 10.0

    def secrets(self, name: str) -> list[str]:
        """The secret(s) configured under ``credentials[name]``: one string or a list of strings,
        newest first, so a secret can be rotated without refusing what the old one signed."""
        value = (self.credentials or {}).get(name)
        values = value if isinstance(value, list) else [value]
        return [v for v in values if isinstance(v, str) and v]


class Gateway(Protocol):
    kind: str  # "simulator", "stripe", "adyen"
    # Whether ``retrieve`` can find an attempt (an adapter without a lookup sets it False): when it
    # can, an inconclusive ``retrieve`` means its answer was lost, not that nothing is known there.
    can_look_up: bool
    # The webhook half of the port, built from the same GatewayConfig. A class of its own because
    # reading notifications needs none of the API credentials the adapter requires.
    notifications: type[Notifications]

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


class ActionCompletion(Protocol):
    """Optional part of the port: what became of an attempt whose customer came back from the
    processor's authentication page (3-D Secure). ``request`` is the attempt's charge request (as
    sent), ``details`` the parameters the processor added to the return URL (Adyen's
    ``redirectResult``); the key is derived from our attempt id.
    Answers as ``retrieve`` does: CAPTURED / AUTHORIZED when authenticated and charged, DECLINED
    (``decline_code`` "authentication_failed" when the authentication itself failed), CANCELED,
    still REQUIRES_ACTION, or UNKNOWN / ERROR when the processor could not say. Adapters without
    it are asked ``retrieve``."""

    def action_result(
        self,
        *,
        request: ChargeRequest,
        reference: str | None,
        details: Mapping[str, str],
        idempotency_key: str,
    ) -> GatewayResult: ...


# The neutral decline code of an authentication (3-D Secure) the customer failed or abandoned.
AUTHENTICATION_FAILED = "authentication_failed"


class RefundLookup(Protocol):
    """Optional part of the port: adapters that can find a refund by our id implement it. The
    resolver asks before sending a refund again, because a processor honours an idempotency key
    only for a while (Stripe: 24 h) and a replay after that would refund twice."""

    def refund_retrieve(self, *, attempt_id: str, reference: str, refund_id: str) -> GatewayResult:
        """The processor's truth about our refund ``refund_id`` (re_...) of the charge
        ``reference``: SUCCEEDED (it exists, done or under way), DECLINED_HARD (it exists and
        failed), status NOT_FOUND (certainly none), or GATEWAY_ERROR / UNKNOWN (cannot tell)."""
        ...


# --------------------------------------------------------------------------- notifications
# What a processor tells us by webhook. Its package verifies a request and splits it into
# ``Notification``s, which are stored as received (``apps.payments.news``); a worker later reads
# each stored one as neutral news (``parse_notification``) and applies it through the payments
# services, forward only. Nothing outside the package reads a notification's payload.


class NotificationError(ValueError):
    """A request whose notifications may not be stored; nothing is."""


class NotificationUnauthenticated(NotificationError):
    """The request's own credentials (HTTP basic auth, where configured) are wrong: 401."""


class NotificationSignatureError(NotificationError):
    """The body is not proven to come from the processor: 400 ``signature_invalid``."""


class NotificationFormatError(NotificationError):
    """The body is not the processor's notification format: 400 ``event_invalid``."""


@dataclass(frozen=True)
class Notification:
    """One notification as received and stored (``InboundEvent``)."""

    event_id: str  # unique per gateway account: a redelivery carries the same id
    type: str
    payload: dict
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class NotificationAnswer:
    """What the processor expects back once its notifications are stored (a ``dict`` is JSON)."""

    body: dict | str
    content_type: str = "application/json"


@dataclass(frozen=True)
class NotificationMatch:
    """Stored notifications of a gateway account that say one thing (e.g. "this charge was
    cancelled"): of one of ``types``, with a payload matching every ``all_of`` lookup and one of
    ``any_of`` (Django lookups inside the payload). ``said`` is that thing in words."""

    types: tuple[str, ...]
    any_of: tuple[dict[str, Any], ...]
    said: str
    all_of: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------- news (neutral objects)


@dataclass(frozen=True)
class ChargeRef:
    """How news names one of our charges."""

    attempt_id: str | None  # our attempt id, when the processor echoes it (metadata, reference)
    # The processor's id for the charge; ``PaymentAttempt.reference`` may carry it qualified by the
    # account holding the charge (``<account>/<id>``, a Stripe direct charge).
    reference: str | None
    not_ours: str  # what processing says when no attempt of ours is that charge


@dataclass(frozen=True)
class ChargeNews:
    """What a charge of ours is now at the processor: authorised, captured, declined, voided.
    ``result.status`` is the truth; ``result.outcome`` is as the resolver reads it (a voided charge
    is GATEWAY_ERROR: nothing was charged, and nothing will be)."""

    charge: ChargeRef
    result: GatewayResult
    label: str = ""  # the charge in words ("PaymentIntent pi_..."), for a conflict's message
    # The attempt's recorded reference must be this charge: news naming our attempt for another
    # charge contradicts our records.
    same_charge: bool = False
    # News of money (authorised, captured) that is older than a cancellation of the charge stored
    # since (``Notifications.cancellations``) changes nothing.
    superseded_by_cancel: bool = False
    # An authorisation that the processor captures by itself when the payment captures
    # automatically (Adyen's AUTHORISATION): captured for such payments.
    capture_follows: bool = False


@dataclass(frozen=True)
class RefundReport:
    """One refund of a charge as the processor reports it."""

    refund_id: str | None  # ours (re_...), when the processor echoes it
    reference: str  # the processor's id for the refund
    succeeded: bool | None  # None: not settled yet
    message: str = ""
    # Its amount, when a refund not made through us is to be recorded from this report; None
    # leaves such refunds to the charge's running total (``RefundNews.refunded_total``).
    amount: int | None = None


@dataclass(frozen=True)
class RefundNews:
    """Refunds of one of our charges: ours are settled, those made outside the platform (the
    processor's dashboard) are recorded."""

    charge: ChargeRef
    refunds: tuple[RefundReport, ...]
    outside_reason: str  # the reason recorded for a refund made outside the platform
    # The processor's running total of refunded captured money, when it keeps one: what exceeds
    # the refunds known here is recorded, idempotent by ``total_reference``.
    refunded_total: int | None = None
    total_reference: str = ""
    unchanged: str = ""  # what processing says when nothing was new


@dataclass(frozen=True)
class CaptureFailedNews:
    """The processor failed a capture it had accepted."""

    charge: ChargeRef
    message: str


@dataclass(frozen=True)
class RequestFailedNews:
    """The processor could not do something we asked of it (e.g. a cancellation): nothing changes,
    and the news is recorded as such."""

    charge: ChargeRef
    request: str  # what was asked, in the processor's words (CANCELLATION)
    reason: str


@dataclass(frozen=True)
class DisputeNews:
    """A dispute (chargeback) on one of our charges: opened, or settled won or lost."""

    charge: ChargeRef
    reference: str  # the processor's id for the dispute
    amount: int
    currency: str
    reason: str = ""
    settled: str | None = None  # "won", "lost", or None (opened, under way)
    # Whether this news opens the dispute when it is not recorded yet; a settlement that cannot
    # (it names no opening) needs the dispute recorded.
    opens: bool = True
    label: str = ""  # the news in the processor's words, for messages


@dataclass(frozen=True)
class AccountNews:
    """A connected account (a vendor's, on the processor's Connect) changed."""

    account: ConnectAccount


@dataclass(frozen=True)
class PayoutNews:
    """A payout from a connected account to its bank settled."""

    reference: str  # the processor's id for the payout
    connected_account: str | None  # the account it was made on, when the processor says
    paid: bool
    message: str


@dataclass(frozen=True)
class IgnoredNews:
    """A notification that is deliberately not applied (e.g. for another merchant account)."""

    reason: str


GatewayNews = (
    ChargeNews
    | RefundNews
    | CaptureFailedNews
    | RequestFailedNews
    | DisputeNews
    | AccountNews
    | PayoutNews
    | IgnoredNews
)


class Notifications(Protocol):
    """The webhook half of a processor's package (``<kind>/webhooks.py``), built from the gateway
    account's ``GatewayConfig`` (its secrets: webhook secrets, HMAC keys)."""

    # Whether the processor posts to ``/webhooks/<kind>/<gateway account>`` (the simulator does not).
    endpoint: bool

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> list[Notification]:
        """The notifications in a request, checked over the raw body before anything is parsed
        or stored. Raises NotificationUnauthenticated, NotificationSignatureError or
        NotificationFormatError."""
        ...

    def notification_answer(self, received: list[tuple[Notification, bool]]) -> NotificationAnswer:
        """The answer once ``received`` are stored (each with True when new, False for a
        redelivery)."""
        ...

    def parse_notification(self, notification: Notification) -> list[GatewayNews]:
        """A stored notification as news; [] when nothing in it is applied to payments."""
        ...

    def cancellations(self, *, attempt_id: str, reference: str | None) -> NotificationMatch:
        """The stored notifications saying that our attempt ``attempt_id`` (the processor's charge
        ``reference``) was cancelled."""
        ...
