"""Outbound events (ARCHITECTURE section 7): what every app publishes for storefronts, and its
signed delivery to their endpoints. (Inbound processor notifications live in ``apps.payments``.)"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.core.ids import new_id

# --------------------------------------------------------------------------- outbound (storefronts)


def _event_id() -> str:
    return new_id("evt_")


def _endpoint_id() -> str:
    return new_id("we_")


class OutboundEvent(models.Model):
    """Something a storefront may want to know (``payment.succeeded``, ``refund.succeeded``, ...),
    with a snapshot of the object as the API showed it when the change committed. Written in the
    same transaction as the change, so an event is never lost nor announced for a rolled-back
    change. ``GET /api/v1/events`` lists these; webhooks deliver them."""

    id = models.CharField(primary_key=True, max_length=40, default=_event_id, editable=False)
    type = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64, db_index=True)
    data = models.JSONField(help_text="the object, as the API renders it")
    source_key = models.CharField(
        max_length=200, unique=True, help_text="what caused it (a ledger event's key): published once"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.object_id}"


class WebhookEndpoint(models.Model):
    """A storefront's URL that receives events, signed with its own secret."""

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    id = models.CharField(primary_key=True, max_length=40, default=_endpoint_id, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    enabled_events = models.JSONField(default=list, help_text='event types, or ["*"] for all')
    metadata = models.JSONField(default=dict, blank=True)
    secret_encrypted = models.TextField(help_text="the signing secret (whsec_...), encrypted at rest")
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="after a roll, the old secret also signs until then"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ENABLED, db_index=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="first failed attempt since the last successful delivery"
    )
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.url} [{self.status}]"

    def wants(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events


class WebhookDelivery(models.Model):
    """One event to one endpoint: tried until a 2xx, or until the retry window is over."""

    class State(models.TextChoices):
        PENDING = "pending"  # an attempt is scheduled
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # gave up (window over, or the endpoint was disabled or deleted)

    event = models.ForeignKey(OutboundEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhooks_delivery_once")]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} [{self.state}]"


class WebhookDeliveryAttempt(models.Model):
    """The log of one HTTP request we made: what we sent, what came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    manual = models.BooleanField(default=False, help_text="a redelivery asked for by an operator")
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="the first 2 KB")
    error = models.CharField(max_length=500, blank=True)
    signature = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"
