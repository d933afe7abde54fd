from __future__ import annotations

from django.db.models import QuerySet

from apps.core.queries import filter_given
from apps.customers.models import Customer


def customer_get(*, customer_id: str) -> Customer | None:
    return Customer.objects.filter(pk=customer_id).first()


def customers_query(*, email: str | None = None) -> QuerySet[Customer]:
    """Customers, by ``email`` (any case) when given; unevaluated (the API's pagination orders it)."""
    return filter_given(Customer.objects.all(), email__iexact=email)
