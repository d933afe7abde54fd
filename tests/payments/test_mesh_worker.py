"""The mesh with committed data and a real Celery worker (ARCHITECTURE sections 6 and 7)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from apps.payments.models import GatewayAccount, PaymentIntent, SimulatorCharge
from apps.payments.services import PaymentError, payment_confirm, payment_intent_create
from tests.support import default_queue_worker, fresh_marketplace, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def fresh_tenant(committed):
    tenant = fresh_marketplace("p")
    with tenant_context(tenant):
        yield tenant


@pytest.fixture
def worker(fresh_tenant):
    with default_queue_worker() as w:
        yield w


def test_a_worker_resolves_an_unknown_outcome_and_the_payment_completes_once(worker, fresh_tenant):
    intent = payment_intent_create(
        amount=4200, currency="usd", payment_method="pm_sim_timeout_after_charge", confirm=True
    )
    assert intent.status == "processing"

    with tenant_context(fresh_tenant):
        final = wait_for(
            lambda: PaymentIntent.objects.filter(pk=intent.id, status="succeeded").first(), timeout=60
        )
        assert final.amount_received == 4200
        assert list(final.attempts.values_list("status", flat=True)) == ["captured"]
        assert SimulatorCharge.objects.filter(attempt_id__startswith=intent.id).count() == 1


def test_what_does_not_fit_the_latency_budget_continues_in_a_worker(worker, fresh_tenant):
    GatewayAccount.objects.filter(name="primary").update(settings={"down": True})
    intent = payment_intent_create(amount=1000, currency="usd", payment_method="pm_card_visa")

    # A zero budget: the first attempt fails at primary, the failover is left to the worker.
    after_request = payment_confirm(intent_id=intent.id, budget_ms=0)

    assert after_request.status == "processing"
    final = wait_for(
        lambda: PaymentIntent.objects.filter(pk=intent.id, status="succeeded").first(), timeout=60
    )
    assert final.gateway_account.name == "secondary"
    assert list(final.attempts.values_list("gateway_account__name", "status")) == [
        ("primary", "failed"),
        ("secondary", "captured"),
    ]


def test_concurrent_confirms_of_one_payment_charge_once(fresh_tenant):
    GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 50}})
    intent = payment_intent_create(amount=990, currency="usd", payment_method="pm_card_visa")
    results: list[str] = []

    def confirm():
        try:
            with tenant_context(fresh_tenant):
                results.append(payment_confirm(intent_id=intent.id).status)
        except PaymentError:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == ["refused"] * 7 + ["succeeded"]
    assert SimulatorCharge.objects.filter(attempt_id__startswith=intent.id).count() == 1
