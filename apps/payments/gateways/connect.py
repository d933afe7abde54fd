"""The Connect port: moving a marketplace's money to its vendors through a processor's platform
product (Stripe Connect today, ``gateways/stripe/connect.py``). The vendors app speaks only these
types; each implementation translates its processor's shapes and errors into them.

The funds flow is *separate charges and transfers*: the platform charges the customer, then moves
each vendor's net to the vendor's connected account (a transfer), takes it back on a refund (a
reversal), and the connected account pays out to its bank (a payout). Money-moving calls require an
idempotency key derived from our own ids; the others accept one. Every failure is one
``ConnectError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BusinessType = Literal["individual", "company", "non_profit", "government_entity"]


class ConnectError(Exception):
    """A Connect call failed. ``message`` is one readable line; ``type`` is the processor's error
    type (``invalid_request_error``, ``api_error``...) or ``api_connection_error`` when it was not
    reached or its answer was lost; ``retryable`` says the same request (same idempotency key) may
    be sent again."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.type = type
        self.code = code
        self.param = param
        self.http_status = http_status
        self.request_id = request_id
        self.retryable = retryable

    @property
    def refused(self) -> bool:
        """The processor answered and said no: nothing was done, and the same request would be
        refused again. Everything else (not reached, answer lost, 5xx, 409, 429, an idempotency key
        replayed with other parameters) leaves the outcome unknown: it may have happened."""
        return not self.retryable and self.type != "idempotency_error"


class ConnectStatus:
    """Our vendor statuses that a connected account's state maps to."""

    ONBOARDING = "onboarding"
    ACTIVE = "active"
    RESTRICTED = "restricted"


@dataclass(frozen=True)
class ConnectAccount:
    id: str
    status: str  # ConnectStatus
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    currently_due: tuple[str, ...]
    past_due: tuple[str, ...]
    disabled_reason: str | None
    country: str | None
    default_currency: str | None
    email: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def requirements(self) -> dict[str, Any]:
        """What ``Vendor.requirements`` stores."""
        return {
            "currently_due": list(self.currently_due),
            "past_due": list(self.past_due),
            "disabled_reason": self.disabled_reason,
        }


@dataclass(frozen=True)
class AccountLink:
    url: str
    expires_at: int
    created: int


@dataclass(frozen=True)
class LoginLink:
    url: str
    created: int


@dataclass(frozen=True)
class Transfer:
    id: str
    amount: int
    amount_reversed: int
    currency: str  # lower case
    destination: str
    transfer_group: str | None
    source_transaction: str | None
    reversed: bool
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferReversal:
    id: str
    transfer: str
    amount: int
    currency: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Payout:
    id: str
    account: str
    amount: int
    currency: str
    status: str  # pending, in_transit, paid, failed, canceled
    arrival_date: int | None
    failure_code: str | None
    failure_message: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ConnectRail(Protocol):
    """A marketplace's platform account at the processor. Results are the types above; failures
    are ``ConnectError``. No call is made inside a database transaction by its callers."""

    def account_create(
        self,
        *,
        vendor_id: str,
        email: str,
        country: str,
        business_type: BusinessType = "individual",
        default_currency: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> ConnectAccount: ...

    def account_retrieve(self, account_id: str) -> ConnectAccount: ...

    def account_link_create(
        self, *, account_id: str, refresh_url: str, return_url: str, idempotency_key: str | None = None
    ) -> AccountLink: ...

    def login_link_create(self, *, account_id: str, idempotency_key: str | None = None) -> LoginLink: ...

    def source_charge(self, reference: str) -> str | None:
        """The platform charge behind our attempt's ``reference`` that a transfer may wait for
        (``Transfer.source_transaction``), or None when the charge is not the platform's (made on
        a connected account)."""
        ...

    def transfer_create(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        idempotency_key: str,
        source_transaction: str | None = None,
        metadata: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> Transfer: ...

    def transfer_reverse(
        self,
        *,
        transfer_id: str,
        idempotency_key: str,
        amount: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> TransferReversal: ...

    def payout_create(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
        statement_descriptor: str | None = None,
    ) -> Payout: ...

    def transfer_find(self, *, destination: str, transfer_group: str, transfer: str) -> Transfer | None: ...

    def transfer_reversal_find(
        self, *, transfer_id: str, key: str, value: str
    ) -> TransferReversal | None: ...

    def payout_find(self, *, account_id: str, payout: str, created_gte: int) -> Payout | None: ...
