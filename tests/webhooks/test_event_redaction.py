"""Outbound events are redacted by the card-number rule before they are stored or sent: a second
line behind the refusals at the edge, for data that did not come through it (a processor's
free text)."""

from __future__ import annotations

from apps.core.pan import REDACTED
from apps.webhooks.models import OutboundEvent, WebhookEndpoint
from apps.webhooks.outbound import event_body, event_publish


def test_an_event_holding_a_card_number_is_stored_and_sent_redacted(in_tenant_a):
    WebhookEndpoint.objects.create(url="https://example.com/hooks", enabled_events=["*"])

    event_publish(
        type="dispute.created",
        object_type="dispute",
        object_id="dp_1",
        source_key="test:redaction:1",
        data={
            "id": "dp_1",
            "amount": 424242424242,
            "evidence": {"note": "customer wrote 4242 4242 4242 4242", "5555555555554444": "key"},
            "lines": ["378282246310005", "ok"],
        },
    )

    stored = OutboundEvent.objects.get(source_key="test:redaction:1")
    assert stored.data == {
        "id": "dp_1",
        "amount": 424242424242,
        "evidence": {"note": f"customer wrote {REDACTED}", REDACTED: "key"},
        "lines": [REDACTED, "ok"],
    }
    assert event_body(stored)["data"]["object"] == stored.data
