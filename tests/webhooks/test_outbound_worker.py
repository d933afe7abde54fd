"""A real Celery worker delivers events to a real HTTP receiver, retrying failures on its own
(short backoff through the environment), and a disabled endpoint's operators get an email."""

from __future__ import annotations

import json

import pytest
from django_tenants.utils import tenant_context

from apps.payments.services import payment_intent_create
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint
from apps.webhooks.outbound import SIGNATURE_HEADER, endpoint_create, signature_verify
from tests.support import default_queue_worker, fresh_marketplace, wait_for
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.worker, pytest.mark.slow]


@pytest.fixture
def fresh_tenant(committed):
    return fresh_marketplace("wh")


def test_a_worker_retries_until_the_receiver_answers(fresh_tenant, tmp_path):
    env = {"WEBHOOK_RETRY_BASE_SECONDS": "0.5", "WEBHOOK_RETRY_WINDOW_SECONDS": "60"}
    with (
        Receiver([500, 502, 200]) as receiver,
        default_queue_worker(env=env),
        tenant_context(fresh_tenant),
    ):
        endpoint, secret = endpoint_create(url=receiver.url, enabled_events=["payment.succeeded"])
        intent = payment_intent_create(
            amount=1500, currency="eur", payment_method="pm_card_visa", confirm=True
        )
        delivery = wait_for(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint, state="succeeded").first(),
            timeout=60,
        )

    assert delivery.attempts == 3 and len(receiver.requests) == 3
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # the same event each time
    event = json.loads(receiver.requests[-1].body)
    assert event["data"]["object"]["id"] == intent.id and event["type"] == "payment.succeeded"
    assert all(signature_verify(r.body, r.headers[SIGNATURE_HEADER], secret) for r in receiver.requests)


def _mail_written(folder) -> str:
    """The file backend's messages once one is whole (it ends each with a line of 79 dashes)."""
    text = "".join(path.read_text() for path in folder.iterdir())
    return text if "-" * 79 in text else ""


def test_a_worker_disables_an_endpoint_that_keeps_failing_and_emails_the_operators(fresh_tenant, tmp_path):
    env = {
        "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
        "WEBHOOK_RETRY_WINDOW_SECONDS": "2",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path),
    }
    with Receiver([500]) as receiver, default_queue_worker(env=env), tenant_context(fresh_tenant):
        endpoint, _ = endpoint_create(url=receiver.url, enabled_events=["*"])
        payment_intent_create(amount=700, currency="usd", payment_method="pm_card_visa", confirm=True)
        wait_for(
            lambda: WebhookEndpoint.objects.filter(pk=endpoint.pk, status="disabled").exists(),
            timeout=60,
        )
        text = wait_for(lambda: _mail_written(tmp_path), timeout=20)

    assert f"owner@{fresh_tenant.schema_name}.test" in text and endpoint.url in text
    assert len(receiver.requests) >= 3
