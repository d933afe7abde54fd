"""Operators see inbound events read-only, filter them, and can reprocess them."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from apps.core.models import DurableTask
from apps.payments.models import InboundEvent
from apps.payments.news import PROCESS_HANDLER
from tests.webhooks.processors import post_stripe, process_queued, stripe_body, stripe_event, stripe_intent


def test_inbound_events_are_listed_read_only_filterable_and_reprocessable(gateways, host_client):
    # Given an event received and processed (ignored: not one of our payments)
    body = stripe_body(stripe_event("payment_intent.succeeded", stripe_intent(id="pi_x"), id="evt_admin"))
    assert post_stripe(host_client("alpha.localhost"), body).status_code == 200
    process_queued()
    event = InboundEvent.objects.get(event_id="evt_admin")
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))

    # When an operator looks at it
    listing = client.get(
        "/admin/payments/inboundevent/?state__exact=processed&type__exact=payment_intent.succeeded"
    )
    other_state = client.get("/admin/payments/inboundevent/?state__exact=failed")
    detail = client.get(f"/admin/payments/inboundevent/{event.pk}/change/")
    edit = client.post(f"/admin/payments/inboundevent/{event.pk}/change/", {"type": "x"})
    delete = client.get(f"/admin/payments/inboundevent/{event.pk}/delete/")
    add = client.get("/admin/payments/inboundevent/add/")

    # Then it is there, read-only
    assert listing.status_code == 200 and b"evt_admin" in listing.content
    assert other_state.status_code == 200 and b"evt_admin" not in other_state.content
    assert detail.status_code == 200 and b"pi_x" in detail.content
    assert (edit.status_code, delete.status_code, add.status_code) == (403, 403, 403)

    # And "reprocess" queues it again
    reprocess = client.post(
        "/admin/payments/inboundevent/",
        {"action": "reprocess", "index": 0, "_selected_action": [event.pk]},
        follow=True,
    )
    assert reprocess.status_code == 200
    assert b"Queued 1 event(s) for processing" in reprocess.content
    assert InboundEvent.objects.get(pk=event.pk).state == "pending"
    assert DurableTask.objects.filter(handler=PROCESS_HANDLER, state="pending").count() == 1
    assert process_queued() == ["done"]
    assert InboundEvent.objects.get(pk=event.pk).state == "processed"
