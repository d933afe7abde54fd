"""Checkout sessions: what a shopper pays (or which card they save) on the marketplace's hosted
checkout page or its embedded element. The session names the payment (``pay_...``) or the
payment method (``paym_...``) it made; the money itself lives in payments."""

from __future__ import annotations

from django.db import models

from apps.core.ids import new_id


def new_checkout_session_id() -> str:
    return new_id("cs_")


class CheckoutSession(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETE = "complete"
        EXPIRED = "expired"

    class Mode(models.TextChoices):
        PAYMENT = "payment"
        SETUP = "setup"

    id = models.CharField(primary_key=True, max_length=40, default=new_checkout_session_id, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.PAYMENT)
    # Payment mode: the total in minor units (the line items' sum when they are given). Setup: 0.
    amount = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    line_items = models.JSONField(default=list, blank=True)  # [{"name", "amount", "quantity"}]
    customer_id = models.CharField(max_length=40, blank=True)
    splits = models.JSONField(null=True, blank=True)  # as given; validated by the split hooks
    save_payment_method = models.BooleanField(default=False)
    success_url = models.URLField(max_length=2000, blank=True)
    cancel_url = models.URLField(max_length=2000, blank=True)
    client_secret = models.CharField(max_length=100, editable=False)
    payment_id = models.CharField(max_length=40, blank=True, db_index=True)
    payment_method_id = models.CharField(max_length=40, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return self.id
