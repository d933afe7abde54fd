"""Inbound notifications moved from the webhooks app to payments (same table): processing queued
under the old handler path still runs once the migration has run in the marketplace's schema."""

from __future__ import annotations

import importlib

from django.apps import apps as django_apps
from django.contrib.contenttypes.models import ContentType

from apps.core.models import DurableTask
from apps.payments.models import InboundEvent
from apps.payments.news import PROCESS_HANDLER
from tests.webhooks.processors import post_stripe, process_queued, stripe_body, stripe_event, stripe_intent

MOVE = importlib.import_module("apps.payments.migrations.0006_inboundevent")


def test_the_table_keeps_its_name_and_the_admin_permissions_follow_the_model(gateways):
    assert InboundEvent._meta.db_table == "webhooks_inboundevent"
    assert ContentType.objects.get_for_model(InboundEvent).app_label == "payments"
    assert not ContentType.objects.filter(app_label="webhooks", model="inboundevent").exists()


def test_processing_queued_before_the_move_runs_after_it(gateways, host_client):
    # Given a notification stored, its processing queued under the webhooks app's old handler path
    body = stripe_body(stripe_event("payment_intent.succeeded", stripe_intent(id="pi_moved"), id="evt_moved"))
    assert post_stripe(host_client("alpha.localhost"), body).status_code == 200
    DurableTask.objects.filter(handler=PROCESS_HANDLER).update(handler=MOVE.OLD_HANDLER)

    # When the migration runs in the schema
    MOVE.forwards(django_apps, None)

    # Then the task runs under the new path and the notification is processed
    assert not DurableTask.objects.filter(handler=MOVE.OLD_HANDLER).exists()
    assert process_queued() == ["done"]
    assert InboundEvent.objects.get(event_id="evt_moved").state == "processed"
