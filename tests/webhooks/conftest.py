"""Webhook test fixtures: tenant A with Stripe and Adyen gateway accounts routed first, and the
processors' HTTP APIs answered by ``responses``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from tests.api.conftest import api  # noqa: F401  (the API fixture, for outbound webhook tests)
from tests.webhooks.processors import install_gateways, reset_breakers


@pytest.fixture
def gateways(in_tenant_a):
    install_gateways()
    yield in_tenant_a
    reset_breakers()


@pytest.fixture
def processor() -> Iterator[responses.RequestsMock]:
    """Stripe's and Adyen's HTTP APIs; a test adds the answers it needs."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps
