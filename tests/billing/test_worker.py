"""A real Celery worker runs the billing job for a marketplace (as beat's dispatcher sends it): a
subscription whose period ended is renewed and charged once, however often the job is sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from apps.billing.models import Invoice
from apps.billing.services import price_create, product_create, subscription_create
from apps.billing.tasks import billing_run
from apps.customers.services import customer_create
from apps.payments.models import SimulatorCharge
from tests.support import default_queue_worker, fresh_marketplace, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_a_worker_renews_a_due_subscription_once(committed):
    tenant = fresh_marketplace("bw")
    with tenant_context(tenant):
        price = price_create(
            product_id=product_create(name="Pro").id, amounts={"usd": 1500}, interval="month"
        )
        customer = customer_create(email="c@bw.test")
        # subscribed 40 days ago: its first month is over, so the job finds it due
        sub = subscription_create(
            customer_id=customer.id,
            price_id=price.id,
            currency="usd",
            payment_method="pm_card_visa",
            now=timezone.now() - timedelta(days=40),
        )
        assert Invoice.objects.filter(subscription=sub, status="paid").count() == 1

        with default_queue_worker():
            for _ in range(3):  # the dispatcher may send it again before the first run ends
                billing_run.delay()
            wait_for(lambda: Invoice.objects.filter(subscription=sub, status="paid").count() >= 2, timeout=60)
            billing_run.delay()
            # give the last run time to (not) do anything
            wait_for(lambda: not Invoice.objects.filter(subscription=sub, status="open").exists(), timeout=30)

        invoices = list(Invoice.objects.filter(subscription=sub).order_by("period_start"))
        assert [i.status for i in invoices] == ["paid", "paid"]
        assert SimulatorCharge.objects.count() == 2  # one charge per period
        assert invoices[1].period_start == invoices[0].period_end
