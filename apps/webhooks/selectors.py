"""Reads of webhook endpoints and outbound events. The lists return unevaluated querysets (the
API's pagination orders and slices them)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from apps.core.queries import filter_given
from apps.webhooks.models import OutboundEvent, WebhookEndpoint


def endpoints_query() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.all()


def endpoint_get(*, endpoint_id: str) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(pk=endpoint_id).first()


def outbound_events_query(
    *,
    type: str | None = None,
    object_id: str | None = None,
    created: dict[str, datetime] | None = None,
) -> QuerySet[OutboundEvent]:
    """Outbound events, of ``type`` and about ``object_id`` when given; ``created`` maps lookups
    (``gte``, ``lt``...) to times."""
    created_at = {f"created_at__{op}": value for op, value in (created or {}).items()}
    return filter_given(OutboundEvent.objects.all(), type=type, object_id=object_id, **created_at)


def outbound_event_get(*, event_id: str) -> OutboundEvent | None:
    return OutboundEvent.objects.filter(pk=event_id).first()
