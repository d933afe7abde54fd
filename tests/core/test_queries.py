"""filter_given (apps/core/queries.py): the optional filters of every list selector."""

from __future__ import annotations

from apps.billing.models import Price
from apps.core.queries import filter_given


def _where(qs) -> str:
    return str(qs.query).partition(" WHERE ")[2].partition(" ORDER BY ")[0]


def test_none_and_empty_narrow_nothing_every_other_value_does():
    everything = Price.objects.all()
    assert _where(filter_given(everything, product_id=None, nickname="")) == ""
    assert _where(filter_given(everything, product_id="prod_1", active=False, interval_count=0)) == (
        '(NOT "billing_price"."active" AND "billing_price"."interval_count" = 0 '
        'AND "billing_price"."product_id" = prod_1)'
    )
