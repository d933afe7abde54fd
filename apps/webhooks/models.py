"""Inbound processor events (ARCHITECTURE section 7): each verified event is stored once, as it
arrived, and applied to our payments by a worker."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.payments.models import GatewayAccount


class InboundEvent(models.Model):
    """One event a processor sent us: Stripe's ``evt_...``, or one Adyen notification item.
    Unique per gateway account, so a redelivery is acknowledged and not stored again."""

    class Provider(models.TextChoices):
        STRIPE = "stripe"
        ADYEN = "adyen"

    class State(models.TextChoices):
        PENDING = "pending"  # stored; a worker will apply it
        PROCESSED = "processed"  # applied (or nothing to apply); see ``result``
        FAILED = "failed"  # the last try raised (retried by its durable task) or contradicts our records

    gateway_account = models.ForeignKey(
        GatewayAccount, on_delete=models.PROTECT, related_name="inbound_events"
    )
    provider = models.CharField(max_length=10, choices=Provider.choices)
    event_id = models.CharField(
        max_length=255,
        help_text="Stripe's event id; for Adyen eventCode:pspReference:success (Adyen has no event id)",
    )
    type = models.CharField(max_length=100, db_index=True, help_text="Stripe's type or Adyen's eventCode")
    body = models.TextField(help_text="the request body exactly as received (what the signature covers)")
    payload = models.JSONField(help_text="the event (Stripe) or the notification item (Adyen)")
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="when the processor says it happened")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    result = models.CharField(max_length=500, blank=True, help_text="what processing did")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway_account", "event_id"], name="webhooks_inbound_event_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.event_id} [{self.state}]"
