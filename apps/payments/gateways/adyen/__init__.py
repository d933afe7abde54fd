"""Adyen, in one package: the payments adapter (``gateway.py``) and its webhooks
(``webhooks.py``). Nothing outside this package imports the Adyen SDK."""

from apps.payments.gateways.adyen.gateway import AdyenGateway

__all__ = ["AdyenGateway"]
