"""What the API layer itself stores: idempotency records (per marketplace schema)."""

from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """One ``Idempotency-Key`` of one API key. Written and committed (``in_flight``) before the
    request's work starts, so a concurrent identical request finds it; holds the first response
    once the work is done (``complete``). Bound (``resource_type``, ``resource_ids``) to what the
    request created, in the transaction that created it, so a retry after a crash resumes that
    instead of creating it again. Kept at least ``API_IDEMPOTENCY_TTL``."""

    class Status(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETE = "complete"

    api_key_id = models.BigIntegerField(help_text="tenants.ApiKey (public schema)")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IN_FLIGHT)
    locked_until = models.DateTimeField(help_text="an in-flight record older than this was abandoned")
    owner = models.CharField(
        max_length=32,
        default="",
        help_text="the request holding the key: a new token at each claim or takeover",
    )
    resource_type = models.CharField(
        max_length=20,
        blank=True,
        default="",
        help_text="what the request created or acts on (payment, refund...)",
    )
    resource_ids = models.JSONField(
        default=list, blank=True, help_text="its ids (several when created together: payouts per currency)"
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["api_key_id", "key"], name="api_idempotency_key_per_api_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
