"""Inbound webhooks (ARCHITECTURE section 7): store each verified event once, answer at once, and
apply it to our payments in a worker.

``inbound_events_store`` writes the events and their durable tasks in one transaction (the task is
sent after commit and swept if the message is lost), so an acknowledged event is never lost and a
redelivery is never stored twice. ``inbound_event_process`` is the durable task's handler: it hands
the event to its provider module (``stripe_events`` / ``adyen_events``), which applies it through
the payments services, forward only: duplicates and events arriving out of order are harmless.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.payments.models import GatewayAccount
from apps.payments.services import GatewayTruthConflict, GatewayTruthNotYet
from apps.webhooks import adyen_events, stripe_events
from apps.webhooks.events import Notification
from apps.webhooks.models import InboundEvent

log = logging.getLogger(__name__)
PROCESS_HANDLER = "apps.webhooks.services.inbound_event_process"
# Backoff 2, 4, 8 ... s (apps.core.durable): about 4.5 hours in all, ample for the event an
# out-of-order one waits for (a refund reported before its capture).
PROCESS_MAX_ATTEMPTS = 14
_APPLY = {InboundEvent.Provider.STRIPE: stripe_events.apply, InboundEvent.Provider.ADYEN: adyen_events.apply}


@dataclass(frozen=True)
class Stored:
    event: InboundEvent
    created: bool  # False: a redelivery of an event already stored


def inbound_events_store(
    *, account: GatewayAccount, provider: str, body: str, notifications: list[Notification]
) -> list[Stored]:
    """Idempotent (by provider event id per gateway account): store verified events as received,
    each with a durable task to process it, in one transaction. A redelivery returns the stored
    event and queues nothing; concurrent deliveries of one event store it once."""
    stored = []
    with transaction.atomic():
        for notification in notifications:
            event, created = InboundEvent.objects.get_or_create(
                gateway_account=account,
                event_id=notification.event_id[:255],
                defaults={
                    "provider": provider,
                    "type": notification.type[:100],
                    "body": body,
                    "payload": notification.payload,
                    "occurred_at": notification.occurred_at,
                },
            )
            if created:
                _enqueue(event, key=f"webhook:{event.pk}")
            stored.append(Stored(event, created))
    return stored


def _enqueue(event: InboundEvent, *, key: str) -> None:
    durable_enqueue(
        handler=PROCESS_HANDLER,
        kwargs={"inbound_event_id": event.pk},
        idempotency_key=key,
        max_attempts=PROCESS_MAX_ATTEMPTS,
    )


def inbound_event_process(*, inbound_event_id: int) -> str:
    """Idempotent: apply one stored event to our payments and mark it processed (an event already
    processed is skipped). Returns its state. An event contradicting a final state of ours is marked
    failed with the reason and not retried (an operator looks, then may reprocess it). One that
    waits for another (a refund before its capture) stays pending and raises, as does any other
    error (marked failed), so its durable task retries with backoff."""
    with transaction.atomic():
        event = (
            InboundEvent.objects.select_for_update()
            .select_related("gateway_account")
            .get(pk=inbound_event_id)
        )
        if event.state == InboundEvent.State.PROCESSED:
            return event.state
        event.attempts += 1
        event.save(update_fields=["attempts"])
    # No lock is held while applying: the payments services lock what they change, and may call
    # a gateway (a failover after "nothing was charged").
    try:
        result = _APPLY[InboundEvent.Provider(event.provider)](event)
    except GatewayTruthConflict as exc:
        log.error("inbound event contradicts our records", extra={"event": event.event_id, "why": str(exc)})
        _mark(event, InboundEvent.State.FAILED, error=f"conflict: {exc}")
        return InboundEvent.State.FAILED
    except GatewayTruthNotYet as exc:
        if event.attempts >= PROCESS_MAX_ATTEMPTS:  # what it waits for never came: an operator looks
            _mark(event, InboundEvent.State.FAILED, error=f"gave up waiting: {exc}")
            return InboundEvent.State.FAILED
        _mark(event, InboundEvent.State.PENDING, error=f"waiting: {exc}")
        raise
    except Exception as exc:
        _mark(event, InboundEvent.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    _mark(event, InboundEvent.State.PROCESSED, result=result)
    return InboundEvent.State.PROCESSED


def _mark(event: InboundEvent, state: str, *, result: str = "", error: str = "") -> None:
    fields: dict[str, object] = {"state": state, "last_error": error[:2000]}
    if state == InboundEvent.State.PROCESSED:
        fields.update(processed_at=timezone.now(), result=result[:500])
    InboundEvent.objects.filter(pk=event.pk).update(**fields)


def inbound_events_reprocess(*, inbound_event_ids: list[int]) -> int:
    """Queue stored events to be applied again (e.g. after an operator resolved a conflict).
    Harmless for events already applied: the payments services move forward only. Returns how
    many were queued."""
    queued = 0
    for pk in inbound_event_ids:
        with transaction.atomic():
            if not InboundEvent.objects.filter(pk=pk).update(state=InboundEvent.State.PENDING):
                continue
            _enqueue(InboundEvent(pk=pk), key=f"webhook:{pk}:reprocess:{uuid.uuid4().hex}")
        queued += 1
    return queued
