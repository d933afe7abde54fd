"""A storefront's customers (``cus_...``). Payments name them by id (``PaymentIntent.customer_id``)."""

from __future__ import annotations

from django.db import models

from apps.core.ids import new_id


def new_customer_id() -> str:
    return new_id("cus_")


class Customer(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_customer_id, editable=False)
    email = models.EmailField(blank=True)
    name = models.CharField(max_length=256, blank=True)
    description = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["email"], name="customers_email")]

    def __str__(self) -> str:
        return f"{self.id} {self.email or self.name}"
