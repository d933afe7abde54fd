"""Every way a Customer changes."""

from __future__ import annotations

from apps.customers.models import Customer


def customer_create(
    *, email: str = "", name: str = "", description: str = "", metadata: dict | None = None
) -> Customer:
    """Create a customer. Input is validated by the caller (the API serializer)."""
    return Customer.objects.create(email=email, name=name, description=description, metadata=metadata or {})


def customer_update(
    *,
    customer: Customer,
    email: str | None = None,
    name: str | None = None,
    description: str | None = None,
    metadata: dict | None = None,
) -> Customer:
    """Change the given fields. Metadata merges key by key (Stripe's rule): an empty string value
    removes that key."""
    fields = []
    for field, value in (("email", email), ("name", name), ("description", description)):
        if value is not None:
            setattr(customer, field, value)
            fields.append(field)
    if metadata is not None:
        merged = {**customer.metadata, **metadata}
        customer.metadata = {k: v for k, v in merged.items() if v != ""}
        fields.append("metadata")
    if fields:
        customer.save(update_fields=[*fields, "updated_at"])
    return customer
