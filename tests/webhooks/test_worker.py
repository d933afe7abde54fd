"""Webhooks end to end with committed data and a real Celery worker: the HTTP request stores the
event and answers; the worker applies it (ARCHITECTURE section 7)."""

from __future__ import annotations

import pytest
import responses
from django_tenants.utils import tenant_context

from apps.core import durable
from apps.payments.models import InboundEvent, PaymentIntent
from tests.support import default_queue_worker, fresh_marketplace, wait_for
from tests.webhooks.processors import (
    install_gateways,
    post_stripe,
    stripe_body,
    stripe_event,
    stripe_intent,
    stripe_payment,
)

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def fresh_tenant(committed):
    tenant = fresh_marketplace("w", simulator_latency_ms=None)
    with tenant_context(tenant):
        install_gateways()
    yield tenant


@pytest.fixture
def worker(fresh_tenant):
    with default_queue_worker() as w:
        yield w


def test_a_real_worker_resolves_an_unknown_attempt_from_a_stripe_webhook(worker, fresh_tenant, host_client):
    # Given a committed payment whose answer from Stripe was lost. The resolver's message is held
    # back (its durable row stays, as after a lost message), so the webhook is what resolves it.
    with tenant_context(fresh_tenant), responses.RequestsMock() as processor, durable.durable_messages_held():
        intent, attempt = stripe_payment(processor, amount=4200)
    assert (intent.status, attempt.status) == ("processing", "unknown")

    # When Stripe's payment_intent.succeeded arrives on the marketplace's host
    news = stripe_intent(
        id="pi_3QxWorker",
        amount=4200,
        amount_received=4200,
        status="succeeded",
        metadata={"attempt_id": attempt.id},
    )
    response = post_stripe(
        host_client(f"{fresh_tenant.schema_name}.localhost"),
        stripe_body(stripe_event("payment_intent.succeeded", news, id="evt_worker_1")),
    )
    assert response.status_code == 200

    # Then the worker applies it: the payment succeeded at Stripe, once
    with tenant_context(fresh_tenant):
        final = wait_for(
            lambda: PaymentIntent.objects.filter(pk=intent.pk, status="succeeded").first(), timeout=60
        )
        assert final.amount_received == 4200
        assert list(final.attempts.values_list("status", "reference")) == [("captured", "pi_3QxWorker")]
        event = wait_for(
            lambda: InboundEvent.objects.filter(event_id="evt_worker_1", state="processed").first()
        )
        assert event.attempts == 1
