"""Which processor package serves which gateway kind. Adding a processor = one package
(``gateways/<kind>/``, see the README's "Adding a processor") + one line here: the adapter class,
which names its webhook reader (``notifications``) and, optionally, its Connect rail (``connect``).
Everything else (the webhook endpoint ``/webhooks/<kind>/<account>``, processing its news) follows
from that line."""

from __future__ import annotations

from django.utils.module_loading import import_string

from apps.payments.gateways.base import Gateway, GatewayConfig, Notifications
from apps.payments.gateways.connect import ConnectRail
from apps.payments.gateways.vault import Vault

GATEWAYS: dict[str, str] = {
    "simulator": "apps.payments.gateways.simulator.SimulatorGateway",
    "stripe": "apps.payments.gateways.stripe.StripeGateway",
    "adyen": "apps.payments.gateways.adyen.AdyenGateway",
}

# The vault of each processor kind that has one (see ``vault.py``): a card saved at an account of
# that kind can be charged, through it, at the accounts it reaches.
VAULTS: dict[str, str] = {
    "simulator": "apps.payments.gateways.simulator.vault.SimulatorVault",
    "stripe": "apps.payments.gateways.stripe.forwarding.StripeForwarding",
}


def gateway_class(kind: str) -> type[Gateway]:
    try:
        path = GATEWAYS[kind]
    except KeyError:
        raise ValueError(f"unknown gateway kind {kind!r}") from None
    return import_string(path)


def gateway_for(kind: str, config: GatewayConfig) -> Gateway:
    return gateway_class(kind)(config)  # type: ignore[call-arg]


def notifications_for(kind: str, config: GatewayConfig) -> Notifications:
    """The webhook reader of ``kind`` for a gateway account's ``config``."""
    reader = getattr(gateway_class(kind), "notifications", None)
    if reader is None:
        raise ValueError(f"gateway kind {kind!r} reads no notifications")
    return reader(config)


def webhook_kinds() -> list[str]:
    """The kinds whose processors post webhooks to ``/webhooks/<kind>/<gateway account>``."""
    return [
        kind
        for kind in GATEWAYS
        if getattr(getattr(gateway_class(kind), "notifications", None), "endpoint", False)
    ]


def connect_kinds() -> list[str]:
    """The kinds whose processors have a Connect rail (moving money to vendors)."""
    return [kind for kind in GATEWAYS if getattr(gateway_class(kind), "connect", None) is not None]


def connect_rail_for(kind: str, config: GatewayConfig) -> ConnectRail | None:
    """The Connect rail of a gateway account, or None when its processor has none or the account
    lacks what the rail needs (e.g. a secret key)."""
    rail = getattr(gateway_class(kind), "connect", None)
    if rail is None or not rail.configured(config):
        return None
    return rail.from_config(config)


def vault_for(kind: str, config: GatewayConfig) -> Vault | None:
    """The vault of the gateway account ``config`` (of processor ``kind``), or None when its
    processor has none or the account does not offer it (see each vault's ``offered``)."""
    path = VAULTS.get(kind)
    if path is None:
        return None
    vault = import_string(path)
    return vault(config) if vault.offered(config) else None
