"""Recording a payment's events: into the ledger, then announced to storefronts (outbound
webhooks) when ``apps.payments.events.OUTBOUND_EVENTS`` names them. The events themselves are
built by ``apps.payments.events``."""

from __future__ import annotations

from apps.ledger.services import EventSpec, ledger_record
from apps.payments.events import OUTBOUND_EVENTS
from apps.webhooks.outbound import event_publish


def record_events(specs: list[EventSpec]) -> None:
    """Record a payment's events of one transaction, in order. Callers write them last, just before
    the commit, so the balance rows a posting locks are held as briefly as possible. No savepoint
    per event: a payment's stream is only written under its row lock (or at its creation), and if
    recording fails the caller's whole transaction rolls back."""
    for s in specs:
        ledger_record(
            event_type=s.event_type,
            stream=s.stream,
            payload=s.payload,
            idempotency_key=s.idempotency_key,
            savepoint=False,
        )
    for s in specs:
        announced = OUTBOUND_EVENTS.get(s.event_type)
        if announced:
            event_type, object_type = announced
            event_publish(
                type=event_type,
                object_type=object_type,
                object_id=s.payload["refund"] if object_type == "refund" else s.stream,
                source_key=s.idempotency_key,
            )


def record_event(spec: EventSpec) -> None:
    """``record_events`` for one event."""
    record_events([spec])
