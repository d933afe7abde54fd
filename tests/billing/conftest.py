from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from apps.billing.collection import billing_run
from apps.billing.services import billing_defaults_install, price_create, product_create, subscription_create
from apps.customers.services import customer_create
from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount
from tests.api.conftest import api  # noqa: F401  (the API client fixture)
from tests.vendors.test_funds import run_tasks

T0 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


def configure(name: str, **settings) -> None:
    account = GatewayAccount.objects.get(name=name)
    account.settings = {"latency_ms": {"p50": 0}, **settings}
    account.save()


@pytest.fixture
def billing(in_tenant_a):
    """Tenant A with its simulator gateways (no latency, closed breakers) and billing defaults."""
    GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()
    billing_defaults_install()
    yield in_tenant_a
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()


@pytest.fixture
def clock():
    """A clock the test moves: ``clock.to(datetime)``; starts at T0."""

    class Clock:
        def __init__(self) -> None:
            self.traveller = time_machine.travel(T0, tick=False)
            self.coordinates = self.traveller.start()

        def to(self, when: datetime) -> None:
            self.coordinates.move_to(when)

    c = Clock()
    yield c
    c.traveller.stop()


def run() -> dict:
    """What the periodic job does at the (moved) clock, with the durable tasks it scheduled."""
    report = billing_run().as_dict()
    run_tasks()
    return report


def monthly_price(amounts=None, **kw):
    product = product_create(name=kw.pop("product_name", "Pro plan"))
    return price_create(
        product_id=product.id, amounts=amounts or {"usd": 2000, "eur": 1800}, interval="month", **kw
    )


def subscribe(price, *, card="pm_card_visa", currency="usd", email="", **kw):
    customer = customer_create(email=email, name="Jenny")
    return subscription_create(
        customer_id=customer.id, price_id=price.id, currency=currency, payment_method=card, **kw
    )
