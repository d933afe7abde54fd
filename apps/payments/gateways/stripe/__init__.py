"""Stripe, in one package: the payments adapter (``gateway.py``), the one translation of Stripe's
objects (``shapes.py``) and of its failures (``errors.py``), its webhooks (``webhooks.py``) and
Connect (``connect.py``). Nothing outside this package imports the Stripe SDK."""

from apps.payments.gateways.stripe.gateway import StripeGateway

__all__ = ["StripeGateway"]
