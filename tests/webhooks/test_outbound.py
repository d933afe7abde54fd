"""Outbound delivery against a real HTTP receiver on 127.0.0.1: signatures, retries with backoff,
the attempt log, giving up after the window, disabling the endpoint and emailing operators, and
manual redelivery. The clock is moved with time-machine; the durable tasks run in-process here
(a real worker runs them in test_outbound_worker.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from apps.core.durable import durable_run
from apps.core.models import DurableTask
from apps.webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from apps.webhooks.outbound import (
    SIGNATURE_HEADER,
    delivery_attempt,
    delivery_redeliver,
    endpoint_create,
    endpoint_roll_secret,
    retry_delay,
    signature_header,
    signature_verify,
)
from tests.api.conftest import pay
from tests.support import run_durable_tasks
from tests.webhooks.receiver import Receiver


def _due_webhook_tasks() -> list[DurableTask]:
    return list(
        DurableTask.objects.filter(
            handler="apps.webhooks.outbound.delivery_attempt",
            state=DurableTask.State.PENDING,
            next_run_at__lte=timezone.now(),
        )
    )


def run_due() -> int:
    """What the worker does: run every due delivery task (one round)."""
    return run_durable_tasks(handler="apps.webhooks.outbound.delivery_attempt", rounds=1)


def scheduled_at() -> list:
    return sorted(
        DurableTask.objects.filter(
            handler="apps.webhooks.outbound.delivery_attempt", state=DurableTask.State.PENDING
        ).values_list("next_run_at", flat=True)
    )


# --------------------------------------------------------------------------- signatures


def test_signature_round_trip_tolerance_and_wrong_secret():
    body = b'{"id":"evt_1"}'
    header = signature_header(body, ["whsec_a"], 1_800_000_000)

    assert header.startswith("t=1800000000,v1=")
    assert signature_verify(body, header, "whsec_a", now=1_800_000_100)
    assert not signature_verify(body, header, "whsec_b", now=1_800_000_100)
    assert not signature_verify(body + b" ", header, "whsec_a", now=1_800_000_100)
    assert not signature_verify(body, header, "whsec_a", now=1_800_000_301)  # older than 5 minutes
    assert not signature_verify(body, "v1=abc", "whsec_a")
    assert not signature_verify(body, "t=x,v1=abc", "whsec_a")
    two = signature_header(body, ["whsec_new", "whsec_old"], 1_800_000_000)
    assert signature_verify(body, two, "whsec_old", now=1_800_000_000)
    assert signature_verify(body, two, "whsec_new", now=1_800_000_000)


# --------------------------------------------------------------------------- delivery


def test_a_delivery_is_signed_and_carries_the_event(api):
    with Receiver([200]) as receiver:
        endpoint, secret = endpoint_create(url=receiver.url, enabled_events=["payment.succeeded"])
        paid = pay(api, amount=3100)
        assert run_due() == 1

    (request,) = receiver.requests
    assert signature_verify(request.body, request.headers[SIGNATURE_HEADER], secret)
    event = json.loads(request.body)
    assert event["type"] == "payment.succeeded" and event["object"] == "event"
    assert event["data"]["object"]["id"] == paid["id"] and event["data"]["object"]["amount"] == 3100
    assert request.headers["Marketplace-Event-Id"] == event["id"]
    assert request.headers["Content-Type"] == "application/json"
    assert api.get(f"/api/v1/events/{event['id']}").json() == event
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    (logged,) = delivery.attempt_log.all()
    assert logged.succeeded and logged.status_code == 200 and logged.response_body == '{"received": true}'
    assert run_due() == 0  # nothing more to do


def test_failures_are_retried_with_exponential_backoff_until_a_2xx(api):
    assert [retry_delay(n).total_seconds() for n in range(1, 8)] == [
        60,
        240,
        960,
        3840,
        15360,
        21600,
        21600,
    ]
    with Receiver([500, 503, 200]) as receiver, time_machine.travel(timezone.now(), tick=True) as clock:
        endpoint, _ = endpoint_create(url=receiver.url, enabled_events=["*"])
        pay(api)
        start = timezone.now()
        run_due()
        # then the next attempt waits a minute, then four
        (first_retry,) = scheduled_at()
        assert timedelta(seconds=59) < first_retry - start < timedelta(seconds=62)
        assert run_due() == 0  # not due yet
        clock.shift(61)
        run_due()
        (second_retry,) = scheduled_at()
        assert timedelta(seconds=239) < second_retry - timezone.now() <= timedelta(seconds=240)
        assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is not None
        clock.shift(241)
        run_due()

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.state, delivery.attempts) == ("succeeded", 3)
    log = list(delivery.attempt_log.order_by("number").values_list("number", "status_code", "succeeded"))
    assert log == [(1, 500, False), (2, 503, False), (3, 200, True)]
    assert len(receiver.requests) == 3
    assert len({r.headers[SIGNATURE_HEADER] for r in receiver.requests}) == 3  # signed anew each time
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.last_success_at is not None
    assert scheduled_at() == []


@override_settings(WEBHOOK_TIMEOUT_SECONDS=0.3)
def test_timeouts_redirects_and_refused_connections_are_failures(api):
    with Receiver([200], delay=1.0) as slow, Receiver([302], location="https://elsewhere.test/") as moved:
        slow_endpoint, _ = endpoint_create(url=slow.url, enabled_events=["*"])
        moved_endpoint, _ = endpoint_create(url=moved.url, enabled_events=["*"])
        closed_endpoint, _ = endpoint_create(url="http://127.0.0.1:9/hooks", enabled_events=["*"])
        pay(api)
        run_due()

    errors = {
        a.delivery.endpoint_id: (a.status_code, a.error)
        for a in WebhookDeliveryAttempt.objects.select_related("delivery")
    }
    assert errors[slow_endpoint.pk] == (None, "no answer within 0.3 s")
    assert errors[moved_endpoint.pk] == (302, "HTTP 302")
    assert errors[closed_endpoint.pk][0] is None and "ConnectionError" in errors[closed_endpoint.pk][1]
    assert WebhookDelivery.objects.filter(state="pending").count() == 3  # all to be retried


def test_after_24_hours_of_failures_it_gives_up_disables_the_endpoint_and_emails_operators(
    api, tenant_a, django_capture_on_commit_callbacks
):
    with Receiver([500]) as receiver, time_machine.travel(timezone.now(), tick=True) as clock:
        endpoint, _ = endpoint_create(url=receiver.url, enabled_events=["payment.succeeded"])
        pay(api)
        created = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(20):
                if not run_due():
                    pending = scheduled_at()
                    if not pending:
                        break
                    clock.move_to(pending[0] + timedelta(seconds=1))

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    attempts = list(delivery.attempt_log.order_by("number").values_list("started_at", flat=True))
    # 1 min, 4 min, 16 min, 64 min, 4.3 h, then every 6 h, and a last try when the 24 h are over
    offsets = [round((t - created).total_seconds() / 60) for t in attempts]
    assert offsets == [0, 1, 5, 21, 85, 341, 701, 1061, 1421, 1440]
    assert delivery.state == "failed" and delivery.attempts == 10
    endpoint.refresh_from_db()
    assert endpoint.status == "disabled" and "HTTP 500" in endpoint.disabled_reason
    (email,) = mail.outbox
    assert tenant_a.owner_email in email.to
    assert endpoint.url in email.subject and endpoint.id in email.body
    assert len(receiver.requests) == 10

    # a disabled endpoint receives nothing new (its deliveries are logged as failed), until enabled
    with Receiver([200]) as receiver2:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=receiver2.url)
        pay(api)
        run_due()
        assert receiver2.requests == []
        # but an operator can redeliver by hand, and a success clears the record
        delivery_redeliver(delivery_id=delivery.pk)
        run_due()
        assert len(receiver2.requests) == 1
    delivery.refresh_from_db()
    assert delivery.state == "succeeded" and delivery.attempt_log.filter(manual=True, succeeded=True).exists()


def test_a_rolled_secret_signs_beside_the_new_one(api):
    with Receiver([200]) as receiver:
        endpoint, old = endpoint_create(url=receiver.url, enabled_events=["*"])
        _, new = endpoint_roll_secret(endpoint_id=endpoint.pk, expires_in_hours=1)
        pay(api)
        run_due()

    (request,) = receiver.requests
    header = request.headers[SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    assert signature_verify(request.body, header, old) and signature_verify(request.body, header, new)


def test_a_deleted_endpoint_stops_its_retries(api):
    with Receiver([500]) as receiver, time_machine.travel(timezone.now(), tick=True) as clock:
        endpoint, _ = endpoint_create(url=receiver.url, enabled_events=["*"])
        pay(api)
        run_due()
        endpoint.delete()
        clock.shift(120)
        run_due()
    assert len(receiver.requests) == 1


def test_running_an_attempt_twice_sends_once(api):
    with Receiver([200]) as receiver:
        endpoint_create(url=receiver.url, enabled_events=["*"])
        pay(api)
        (task,) = _due_webhook_tasks()
        durable_run(task_id=str(task.pk))
        durable_run(task_id=str(task.pk))
        delivery = WebhookDelivery.objects.get()
        assert delivery_attempt(delivery_id=delivery.pk, number=1) == "skipped"
    assert len(receiver.requests) == 1


def test_admin_shows_deliveries_with_their_log_and_redelivers(api, host_client):
    with Receiver([500]) as receiver:
        endpoint_create(url=receiver.url, enabled_events=["*"])
        pay(api)
        run_due()
        delivery = WebhookDelivery.objects.get()
        client = host_client("alpha.localhost")
        client.force_login(get_user_model().objects.get(username="ops@alpha.test"))

        listing = client.get("/admin/webhooks/webhookdelivery/")
        page = client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/")
        endpoints = client.get("/admin/webhooks/webhookendpoint/")
        events = client.get(f"/admin/webhooks/outboundevent/{quote(delivery.event_id)}/change/")
        action = client.post(
            "/admin/webhooks/webhookdelivery/",
            {"action": "redeliver", "_selected_action": [delivery.pk]},
        )
        run_due()

    assert listing.status_code == 200 and delivery.event_id in listing.content.decode()
    assert page.status_code == 200 and "receiver says no" in page.content.decode()
    assert endpoints.status_code == 200 and events.status_code == 200
    assert action.status_code == 302
    assert WebhookDelivery.objects.get().attempts == 2
    assert WebhookDeliveryAttempt.objects.filter(manual=True).count() == 1


@pytest.mark.parametrize("statuses", [[404], [410]])
def test_client_errors_are_retried_too(api, statuses):
    with Receiver(statuses) as receiver:
        endpoint_create(url=receiver.url, enabled_events=["*"])
        pay(api)
        run_due()
    assert WebhookDelivery.objects.get().state == "pending"
