"""The renewal job run twice at once, against committed data, charges each period once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from django.db import connection
from django_tenants.utils import tenant_context

from apps.billing.collection import billing_run
from apps.billing.models import Invoice, InvoiceAttempt, Subscription
from apps.billing.services import price_create, product_create, subscription_create
from apps.customers.services import customer_create
from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount, PaymentAttempt, SimulatorCharge
from tests.billing.conftest import T0

N = 12


def test_two_renewal_jobs_at_once_invoice_and_charge_each_period_once(committed, tenant_a):
    tag = uuid.uuid4().hex[:8]
    with tenant_context(tenant_a):
        GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 2}})
        for name in ("primary", "secondary"):
            CircuitBreaker(name).reset()
        product = product_create(name=f"concurrency {tag}")
        price = price_create(product_id=product.id, amounts={"usd": 1000}, interval="month")
        subs = []
        for i in range(N):
            customer = customer_create(name=f"{tag} {i}")
            # trials ending at T0 + 1 day: the renewal creates the first paid invoice
            subs.append(
                subscription_create(
                    customer_id=customer.id,
                    price_id=price.id,
                    currency="usd",
                    payment_method="pm_card_visa" if i % 3 else "pm_card_chargeDeclined",
                    trial_days=1,
                    now=T0,
                )
            )
    due = T0 + timedelta(days=1, hours=1)
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def job() -> None:
        try:
            with tenant_context(tenant_a):
                barrier.wait()
                reports.append(billing_run(now=due).as_dict())
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with tenant_context(tenant_a):
        ids = [s.id for s in subs]
        invoices = list(Invoice.objects.filter(subscription_id__in=ids))
        assert len(invoices) == N  # one per subscription and period
        assert sum(r["renewed"] for r in reports) == N
        # each invoice had exactly one attempt (a soft-declined one is retried tomorrow, not twice now)
        assert (
            sorted(InvoiceAttempt.objects.filter(invoice__in=invoices).values_list("number", flat=True))
            == [1] * N
        )
        assert sum(r["attempts"] for r in reports) == N
        paid = [i for i in invoices if i.status == "paid"]
        assert len(paid) == N - N // 3
        payment_ids = [i.payment_id for i in invoices]
        assert len(set(payment_ids)) == N
        captured = SimulatorCharge.objects.filter(
            attempt_id__in=PaymentAttempt.objects.filter(intent_id__in=payment_ids).values("id")
        )
        assert captured.count() == len(paid)
        statuses = sorted(Subscription.objects.filter(pk__in=ids).values_list("status", flat=True))
        assert statuses == sorted(["active"] * (N - N // 3) + ["past_due"] * (N // 3))
        # a third run at the same instant finds nothing to do
        again = billing_run(now=due).as_dict()
        assert (again["renewed"], again["attempts"]) == (0, 0)
        GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
