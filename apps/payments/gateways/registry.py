"""Which adapter serves which gateway kind. Adding a gateway = one module + one line here."""

from __future__ import annotations

from django.utils.module_loading import import_string

from apps.payments.gateways.base import Gateway, GatewayConfig

GATEWAYS: dict[str, str] = {
    "simulator": "apps.payments.gateways.simulator.SimulatorGateway",
    "stripe": "apps.payments.gateways.stripe.StripeGateway",
    "adyen": "apps.payments.gateways.adyen.AdyenGateway",
}


def gateway_for(kind: str, config: GatewayConfig) -> Gateway:
    try:
        path = GATEWAYS[kind]
    except KeyError:
        raise ValueError(f"unknown gateway kind {kind!r}") from None
    return import_string(path)(config)
