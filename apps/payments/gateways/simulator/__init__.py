"""The built-in simulator, in one package: the payments adapter (``gateway.py``) and its
webhooks (``webhooks.py``: it sends none)."""

from apps.payments.gateways.simulator.gateway import SimulatorGateway

__all__ = ["SimulatorGateway"]
