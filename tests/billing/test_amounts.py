"""Proration and tax rounding: half-even, largest remainder, parts summing to the whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.billing.amounts import Rate, period_end_after, prorate, tax_lines, totals


def test_proration_rounds_half_even_and_a_round_trip_nets_to_zero():
    period = timedelta(days=30)
    assert prorate(1000, remaining=timedelta(days=15), period=period) == 500
    assert prorate(1, remaining=timedelta(days=15), period=period) == 0  # 0.5 -> 0 (even)
    assert prorate(3, remaining=timedelta(days=15), period=period) == 2  # 1.5 -> 2 (even)
    assert prorate(2999, remaining=timedelta(days=10), period=period) == 1000  # 999.67
    credit, charge = (
        -prorate(2000, remaining=timedelta(days=7), period=period),
        prorate(2000, remaining=timedelta(days=7), period=period),
    )
    assert credit + charge == 0


def test_exclusive_tax_is_added_and_split_across_rates_by_largest_remainder():
    rates = [Rate("state", Decimal("6.25"), False), Rate("county", Decimal("1"), False)]
    lines = tax_lines(999, rates)
    # 999 * 7.25% = 72.4275 -> 72, split 6.25 : 1 by largest remainder
    assert [(t.key, t.amount) for t in lines] == [("state", 62), ("county", 10)]
    t = totals([999], lines)
    assert (t.subtotal, t.tax, t.total) == (999, 72, 1071)


def test_inclusive_tax_is_contained_in_the_price():
    lines = tax_lines(1190, [Rate("vat", Decimal("19"), True)])
    assert [(t.key, t.amount, t.inclusive) for t in lines] == [("vat", 190, True)]
    t = totals([1190], lines)
    assert (t.subtotal, t.tax, t.total) == (1190, 190, 1190)


def test_a_negative_base_credits_tax_too():
    assert [t.amount for t in tax_lines(-500, [Rate("st", Decimal("10"), False)])] == [-50]


def test_monthly_periods_keep_the_anchor_day():
    anchor = datetime(2026, 1, 31, 9, tzinfo=UTC)
    ends = []
    moment = anchor
    for _ in range(4):
        moment = period_end_after(anchor, moment, interval="month", count=1)
        ends.append(moment.date().isoformat())
    assert ends == ["2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]
    assert period_end_after(anchor, anchor, interval="week", count=2) == anchor + timedelta(weeks=2)
