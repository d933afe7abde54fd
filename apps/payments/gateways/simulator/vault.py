"""The simulator's own vault (the demo's "Vault and Forward"): a card saved at a simulator account
whose settings say ``vault: true`` can be charged at any other simulator account. The target
account is handed the card (the test token behind the source's ``simtok_``), charges it as if it
held it (idempotent by attempt id, like every simulator charge), and on a success saves it: the
answer carries the target's own ``simtok_<target>_...``, which the platform stores so later
charges go direct.

The vault is a service of its own, not the source account's payments API: it answers while the
source account is down (its ``down`` / ``outages``), as Stripe's Forwarding API is not its
PaymentIntents API.
"""

from __future__ import annotations

from dataclasses import replace

from apps.payments.gateways.base import (
    ChargeRequest,
    Gateway,
    GatewayConfig,
    GatewayResult,
    GatewayStatus,
    Outcome,
)
from apps.payments.gateways.simulator.gateway import SimulatorGateway, saved_card
from apps.payments.gateways.vault import VaultCharge


class SimulatorVault:
    name = "simulator"

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.account = config.account_id

    @classmethod
    def offered(cls, config: GatewayConfig) -> bool:
        return bool((config.settings or {}).get("vault"))

    def can_reach(self, *, target_kind: str, target: GatewayConfig) -> bool:
        return target_kind == SimulatorGateway.kind and target.account_id != self.account

    def forward_charge(
        self, *, credential: dict, target_kind: str, target: Gateway, request: ChargeRequest
    ) -> VaultCharge:
        if not isinstance(target, SimulatorGateway) or not self.can_reach(
            target_kind=target_kind, target=target.config
        ):
            return VaultCharge(
                GatewayResult(
                    Outcome.GATEWAY_ERROR,
                    GatewayStatus.ERROR,
                    message=f"the simulator vault of {self.account!r} cannot reach this gateway",
                )
            )
        reference = str(credential.get("reference", ""))
        card = saved_card(self.account, reference)  # the card itself, handed from processor to processor
        if card is None:
            return VaultCharge(
                GatewayResult(
                    Outcome.DECLINED_HARD,
                    GatewayStatus.DECLINED,
                    decline_code="invalid_payment_method",
                    message=f"the simulator vault of {self.account!r} holds no card {reference!r}",
                )
            )
        result = target.authorize(replace(request, payment_method=card, credential=None))
        if result.outcome != Outcome.SUCCEEDED:
            return VaultCharge(result)
        stored = target.save_method(
            token=card, customer_reference=request.customer_reference, idempotency_key=request.attempt_id
        )
        return VaultCharge(result, stored if stored.ok else None)
