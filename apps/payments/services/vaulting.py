"""Vault routes: which gateway accounts a payment method of ours can be charged at through a
vault (``apps/payments/gateways/vault.py``) although they hold no credential for it, and the
charge through one.

A route starts at an account holding a credential for the method whose processor offers a
vault (``registry.vault_for``) and ends at each account that vault can reach. Routing keeps
such a candidate (``route(vault_routes=...)``: ``via: "vault"``); the drive step then charges it
through the vault, and a success that saved the card at the target stores the target's own
credential (``services.methods.payment_method_credential_store``), so later charges go direct.

The source account is not routed to, so it need not be enabled or healthy: its vault is another
service of its processor (Stripe's Forwarding API is not its PaymentIntents API), and a marketplace
leaving a processor can disable its account and still reach its cards through the vault. The
call through a vault feeds the target account's breaker, like any charge there.
"""

from __future__ import annotations

from apps.payments.config import MeshConfig
from apps.payments.gateways.base import ChargeRequest, Gateway, GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.registry import vault_for
from apps.payments.gateways.vault import VaultCharge
from apps.payments.models import GatewayAccount
from apps.payments.selectors import payment_method_credential, payment_method_gateways


def vault_routes(*, method_id: str, config: MeshConfig, holders: set[str] | None = None) -> dict[str, dict]:
    """{target account name: {"via": "vault", "vault": <vault name>, "from": <source account>}}
    for every account without a credential for the method that a vault of one holding one
    reaches (the first holder in account order wins). ``holders``: the accounts holding a
    credential, when the caller has them."""
    holders = payment_method_gateways(method_id=method_id) if holders is None else holders
    routes: dict[str, dict] = {}
    for source in config.accounts.values():
        if source.name not in holders:
            continue
        vault = vault_for(source.kind, config.gateway_config(source))
        if vault is None:
            continue
        for target in config.accounts.values():
            if target.name in holders or target.name in routes:
                continue
            if vault.can_reach(target_kind=target.kind, target=config.gateway_config(target)):
                routes[target.name] = {"via": "vault", "vault": vault.name, "from": source.name}
    return routes


def vault_charge(
    *,
    gateway: Gateway,
    account: GatewayAccount,
    method_id: str,
    request: ChargeRequest,
    route: dict,
    config: MeshConfig,
) -> VaultCharge:
    """Charge ``request`` at ``account`` (its adapter ``gateway``) through the vault of the
    route's source account, with the source's credential for the method ``method_id``."""
    source = config.accounts.get(route.get("from", ""))
    vault = vault_for(source.kind, config.gateway_config(source)) if source is not None else None
    credential = (
        payment_method_credential(method_id=method_id, gateway_account_id=source.pk)
        if source is not None
        else None
    )
    if vault is None or credential is None:
        # The route went away since routing (the vault was turned off, the credential removed):
        # nothing was sent.
        return VaultCharge(
            GatewayResult(
                Outcome.GATEWAY_ERROR,
                GatewayStatus.ERROR,
                message=f"no vault route to {account.name} from {route.get('from')!r} any more",
            )
        )
    return vault.forward_charge(
        credential=credential, target_kind=account.kind, target=gateway, request=request
    )
