"""The vault port: reaching a gateway account that holds no credential for a payment method.

A processor that keeps the card (a "vault") can send it, itself, to another processor: Stripe's
Forwarding API ("Vault and Forward") sends a card saved at Stripe to Adyen's ``/payments``; the
simulator's own vault hands a card saved at one simulator account to another. The card data goes
from one processor to the other and never through the platform (PCI SAQ A).

A ``Vault`` is built from the gateway account holding the card (the source: its API keys), and
is asked two things: whether it can reach another gateway account (``can_reach``), and to
charge there (``forward_charge``) with the source's credential for the method and the target's
adapter. The charge is the target's: its answer is read by the target's package
(``ForwardTarget`` for processors reached through an HTTP forwarder), it is idempotent by our
attempt id like any charge, and a success may come with the target's own credential for the
method (``VaultCharge.saved``), which is stored so later charges go direct.

``registry.py`` names one vault per processor kind (``VAULTS``); a processor without one has
none. Only processor packages know shapes; this module is neutral.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from apps.payments.gateways.base import ChargeRequest, Gateway, GatewayConfig, GatewayResult, SavedMethod


@dataclass(frozen=True)
class VaultCharge:
    """A charge made at the target through a vault: the target's answer and, on a success that
    saved the card there, the target's own credential for it."""

    result: GatewayResult
    saved: SavedMethod | None = None


@dataclass(frozen=True)
class ForwardedRequest:
    """A request to a target processor that a forwarder (Stripe Forwarding) sends with the card
    filled in: the target's endpoint, its headers (with its API key) and its body, in which the
    card fields are left empty for the forwarder to replace."""

    url: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    replacements: tuple[str, ...] = ("card_number", "card_expiry", "card_cvc")


@runtime_checkable
class ForwardTarget(Protocol):
    """Optional part of a gateway adapter: a processor that can be charged with a forwarded card
    builds the request (``forward_request``) and reads the answer the forwarder relays
    (``forward_answer``: the HTTP status and body of the target's response)."""

    def forward_request(self, request: ChargeRequest) -> ForwardedRequest: ...

    def forward_answer(self, *, status: int, body: str, request: ChargeRequest) -> VaultCharge: ...


class Vault(Protocol):
    """One processor's vault, built from the ``GatewayConfig`` of the account holding the card."""

    name: str  # "simulator", "stripe_forwarding"

    def __init__(self, config: GatewayConfig) -> None: ...

    @classmethod
    def offered(cls, config: GatewayConfig) -> bool:
        """Whether the account ``config`` offers its vault (it may need enabling there)."""
        ...

    def can_reach(self, *, target_kind: str, target: GatewayConfig) -> bool:
        """Whether a card saved at this account can be charged at the ``target`` account."""
        ...

    def forward_charge(
        self, *, credential: dict, target_kind: str, target: Gateway, request: ChargeRequest
    ) -> VaultCharge:
        """Charge ``request`` at ``target`` with the card behind ``credential`` (this account's
        credential for the method: ``{"reference": ...}``). Idempotent by ``request.attempt_id``.
        Processor failures are results (GATEWAY_ERROR: nothing was charged; UNKNOWN: the charge
        may exist), never exceptions."""
        ...
