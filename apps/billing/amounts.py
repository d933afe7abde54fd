"""Pure billing arithmetic: billing periods, proration and tax. Integer minor units in and out.

Rounding rules (documented once, used everywhere):

- **Proration** of an amount for part of a period is ``amount * remaining / period`` (seconds),
  rounded half-even to the minor unit. A plan change credits the unused part of the old price
  and charges the remaining part of the new one, each rounded on its own, so a change back and
  forth at the same instant nets to exactly zero.
- **Tax** is computed once per invoice on the sum of its taxable lines, per kind: exclusive rates
  add ``base * sum(rates)`` on top; inclusive rates are contained in the base,
  ``base * sum(rates) / (1 + sum(rates))``. Each total is rounded half-even, then split across the
  rates with the largest-remainder method (weights: the rates), so the tax lines always sum to
  the rounded total and the result is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from dateutil.relativedelta import relativedelta

from apps.core.money import allocate

PERCENT_SCALE = 10_000  # percentages have 4 decimal places: 7.25% -> 72_500 weight units


def interval_delta(interval: str, count: int, times: int = 1) -> relativedelta:
    n = count * times
    if interval == "day":
        return relativedelta(days=n)
    if interval == "week":
        return relativedelta(weeks=n)
    if interval == "month":
        return relativedelta(months=n)
    if interval == "year":
        return relativedelta(years=n)
    raise ValueError(f"unknown interval {interval!r}")


def period_end_after(anchor: datetime, moment: datetime, *, interval: str, count: int) -> datetime:
    """The first period boundary ``anchor + k intervals`` strictly after ``moment`` (k >= 1).
    Counting from the anchor keeps month ends stable: Jan 31 -> Feb 28 -> Mar 31."""
    k = 1
    while anchor + interval_delta(interval, count, k) <= moment:
        k += 1
    return anchor + interval_delta(interval, count, k)


def round_half_even(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def prorate(amount: int, *, remaining: timedelta, period: timedelta) -> int:
    """``amount`` for ``remaining`` of ``period``, half-even to the minor unit."""
    total = Decimal(period.total_seconds())
    if total <= 0:
        return 0
    left = min(max(Decimal(remaining.total_seconds()), Decimal(0)), total)
    return round_half_even(Decimal(amount) * left / total)


@dataclass(frozen=True)
class Rate:
    key: str  # the tax rate's id
    percentage: Decimal
    inclusive: bool


@dataclass(frozen=True)
class TaxLine:
    key: str
    amount: int
    inclusive: bool


def _weight(rate: Rate) -> int:
    return int((rate.percentage * PERCENT_SCALE).to_integral_value())


def tax_lines(base: int, rates: list[Rate]) -> list[TaxLine]:
    """The tax of a taxable ``base`` (the sum of an invoice's lines, which may be negative) under
    ``rates``: one line per rate with a non-zero share. See the module's rounding rules."""
    out: list[TaxLine] = []
    for inclusive in (True, False):
        group = [r for r in rates if r.inclusive is inclusive and r.percentage > 0]
        if not group or base == 0:
            continue
        pct = sum((r.percentage for r in group), Decimal(0)) / 100
        tax = Decimal(base) * pct / (1 + pct) if inclusive else Decimal(base) * pct
        parts = allocate(round_half_even(tax), [_weight(r) for r in group])
        out += [TaxLine(r.key, part, inclusive) for r, part in zip(group, parts, strict=True) if part]
    return out


@dataclass(frozen=True)
class Totals:
    subtotal: int  # the lines (inclusive tax inside them)
    tax: int  # all tax
    total: int  # subtotal + exclusive tax


def totals(line_amounts: list[int], taxes: list[TaxLine]) -> Totals:
    subtotal = sum(line_amounts)
    exclusive = sum(t.amount for t in taxes if not t.inclusive)
    return Totals(subtotal=subtotal, tax=sum(t.amount for t in taxes), total=subtotal + exclusive)
