from __future__ import annotations

from apps.customers.models import Customer


def customer_get(*, customer_id: str) -> Customer | None:
    return Customer.objects.filter(pk=customer_id).first()
