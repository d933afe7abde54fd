"""Renewals through the real payment path with the clock moved month by month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.billing.models import Invoice, Subscription
from apps.ledger.models import LedgerEvent
from apps.payments.models import PaymentIntent, SimulatorCharge
from tests.billing.conftest import monthly_price, run, subscribe


def test_monthly_renewals_charge_each_period_once_with_stable_month_ends(billing, clock):
    # given a monthly subscription started on Jan 31 with a good card
    price = monthly_price()
    sub = subscribe(price)
    assert sub.status == "active"
    # when the job runs every day for four months (and twice on each renewal day)
    day = datetime(2026, 2, 1, 9, tzinfo=UTC)
    while day < datetime(2026, 5, 31, tzinfo=UTC):
        clock.to(day)
        run()
        run()
        day += timedelta(days=1)
    # then one invoice per period, month ends anchored on the 31st, each paid once
    invoices = list(Invoice.objects.filter(subscription=sub).order_by("period_start"))
    assert [(i.period_start.date().isoformat(), i.period_end.date().isoformat()) for i in invoices] == [
        ("2026-01-31", "2026-02-28"),
        ("2026-02-28", "2026-03-31"),
        ("2026-03-31", "2026-04-30"),
        ("2026-04-30", "2026-05-31"),
    ]
    assert [i.status for i in invoices] == ["paid"] * 4
    assert [i.amount_paid for i in invoices] == [2000] * 4
    numbers = [int(i.number.split("-")[1]) for i in invoices]
    assert numbers == list(range(numbers[0], numbers[0] + 4))
    payments = PaymentIntent.objects.filter(pk__in=[i.payment_id for i in invoices])
    assert sorted(p.status for p in payments) == ["succeeded"] * 4
    assert all(p.off_session for p in payments)
    assert SimulatorCharge.objects.filter(attempt_id__in=[f"{i.payment_id}_1" for i in invoices]).count() == 4
    captured = LedgerEvent.objects.filter(type="ChargeCaptured", stream__in=[i.payment_id for i in invoices])
    assert captured.count() == 4
    sub.refresh_from_db()
    assert sub.status == "active"
    assert sub.current_period_end == datetime(2026, 5, 31, 9, tzinfo=UTC)
    assert Subscription.objects.get(pk=sub.pk).current_period_start == datetime(2026, 4, 30, 9, tzinfo=UTC)
