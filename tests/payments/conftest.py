from __future__ import annotations

import pytest

from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount


@pytest.fixture
def mesh(in_tenant_a):
    """Tenant A with its two simulator gateways, no latency, closed breakers."""
    GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()
    yield in_tenant_a
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()


def configure(name: str, **settings) -> GatewayAccount:
    account = GatewayAccount.objects.get(name=name)
    account.settings = {"latency_ms": {"p50": 0}, **settings}
    account.save()
    return account
