"""Durable pending work: the database, not the broker, is the source of truth (ARCHITECTURE 7)."""

from __future__ import annotations

import uuid

from django.db import models


class DurableTask(models.Model):
    """One unit of background work. Written in the same transaction as the change that needs it,
    enqueued after commit, and re-enqueued by the sweeper if the enqueue was lost."""

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    handler = models.CharField(max_length=200, help_text="Dotted path of the service to call.")
    kwargs = models.JSONField(default=dict)
    idempotency_key = models.CharField(max_length=200, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=10)
    next_run_at = models.DateTimeField(db_index=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_run_at"])]
        ordering = ["next_run_at"]

    def __str__(self) -> str:
        return f"{self.handler} [{self.state}]"
