"""Receiving: real HTTP requests on the marketplace's host, signatures checked over the raw body,
each event stored once and its processing queued; anything unverified is a 400 that stores nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from apps.core.models import DurableTask
from apps.payments.models import GatewayAccount, InboundEvent
from apps.payments.news import PROCESS_HANDLER
from tests.webhooks.processors import (
    HMAC_KEY,
    WEBHOOK_SECRET,
    adyen_body,
    adyen_item,
    post_adyen,
    post_stripe,
    stripe_body,
    stripe_event,
    stripe_intent,
    stripe_sign,
)

HOST = "alpha.localhost"


def _stripe_succeeded(event_id: str = "evt_1PgcWebhookTest0001") -> bytes:
    intent = stripe_intent(id="pi_3WebhookTest0001", status="succeeded", amount=2000, amount_received=2000)
    return stripe_body(stripe_event("payment_intent.succeeded", intent, id=event_id))


def _nothing_stored() -> bool:
    return (
        not InboundEvent.objects.exists() and not DurableTask.objects.filter(handler=PROCESS_HANDLER).exists()
    )


# ----------------------------------------------------------------- Stripe


def test_a_signed_stripe_event_is_stored_once_with_its_processing_queued(gateways, host_client):
    body = _stripe_succeeded()

    response = post_stripe(host_client(HOST), body)

    assert response.status_code == 200
    assert response.json() == {"received": True, "id": "evt_1PgcWebhookTest0001", "duplicate": False}
    event = InboundEvent.objects.get()
    assert (event.gateway_account.name, event.provider, event.event_id, event.type, event.state) == (
        "stripe_main",
        "stripe",
        "evt_1PgcWebhookTest0001",
        "payment_intent.succeeded",
        "pending",
    )
    assert event.body == body.decode()  # exactly as received
    assert event.payload["data"]["object"]["id"] == "pi_3WebhookTest0001"
    assert event.attempts == 0 and event.processed_at is None
    task = DurableTask.objects.get(handler=PROCESS_HANDLER)
    assert task.kwargs == {"inbound_event_id": event.pk}


def test_a_duplicate_delivery_is_acknowledged_and_not_stored_twice(gateways, host_client):
    body = _stripe_succeeded()
    client = host_client(HOST)

    first = post_stripe(client, body)
    again = post_stripe(client, body, signature=stripe_sign(body, timestamp=int(time.time()) + 1))

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["duplicate"] is True
    assert InboundEvent.objects.count() == 1
    assert DurableTask.objects.filter(handler=PROCESS_HANDLER).count() == 1


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (lambda body: stripe_sign(body, secret="whsec_someone_else"), "No signatures found matching"),
        (lambda body: stripe_sign(b'{"tampered": true}'), "No signatures found matching"),
        (lambda body: stripe_sign(body, timestamp=int(time.time()) - 301), "Timestamp outside the tolerance"),
        (
            lambda body: stripe_sign(body, timestamp=int(time.time()) + 86400),
            "Timestamp outside the tolerance zone (dated in the future)",
        ),
        (
            lambda body: stripe_sign(body, timestamp=int(time.time()) + 360),
            "Timestamp outside the tolerance zone (dated in the future)",
        ),
        (
            lambda body: f"t={int(time.time()) + 86400}," + stripe_sign(body),
            "more than one timestamp",
        ),
        (lambda body: "", "Stripe-Signature header is missing"),
        (lambda body: "garbage", "Unable to extract timestamp and signatures"),
        (lambda body: stripe_sign(body).replace("v1=", "v0="), "No signatures found with expected scheme"),
    ],
    ids=[
        "wrong-secret",
        "other-body",
        "stale",
        "a-day-ahead",
        "ahead-beyond-tolerance",
        "two-timestamps",
        "missing",
        "garbage",
        "no-v1",
    ],
)
def test_a_badly_signed_stripe_event_is_a_400_and_nothing_is_stored(gateways, host_client, signature, why):
    body = _stripe_succeeded()

    response = post_stripe(host_client(HOST), body, signature=signature(body))

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "signature_invalid")
    assert why in error["message"]
    assert _nothing_stored()


def test_a_signature_within_the_tolerance_is_accepted(gateways, host_client):
    body = _stripe_succeeded()

    response = post_stripe(
        host_client(HOST), body, signature=stripe_sign(body, timestamp=int(time.time()) - 290)
    )

    assert response.status_code == 200


def test_a_signature_slightly_ahead_of_our_clock_is_accepted(gateways, host_client):
    body = _stripe_succeeded()

    response = post_stripe(
        host_client(HOST), body, signature=stripe_sign(body, timestamp=int(time.time()) + 290)
    )

    assert response.status_code == 200


def test_every_v1_signature_is_tried_while_stripe_rolls_its_secret(gateways, host_client):
    body = _stripe_succeeded()
    t = int(time.time())
    old_secret = stripe_sign(body, secret="whsec_old_one", timestamp=t).split(",")[1]
    header = f"t={t},{old_secret},{stripe_sign(body, timestamp=t).split(',')[1]}"

    response = post_stripe(host_client(HOST), body, signature=header)

    assert response.status_code == 200


def test_our_side_may_hold_two_secrets_while_rotating(gateways, host_client):
    account = GatewayAccount.objects.get(name="stripe_main")
    account.credentials = {**account.credentials, "webhook_secret": ["whsec_new_one", WEBHOOK_SECRET]}
    account.save()
    body = _stripe_succeeded()

    signed_old = post_stripe(host_client(HOST), body)
    signed_new = post_stripe(
        host_client(HOST),
        _stripe_succeeded("evt_2"),
        signature=stripe_sign(_stripe_succeeded("evt_2"), "whsec_new_one"),
    )

    assert (signed_old.status_code, signed_new.status_code) == (200, 200)
    assert InboundEvent.objects.count() == 2


def test_a_signed_body_that_is_not_a_stripe_event_is_a_400(gateways, host_client):
    body = b'{"hello": "world"}'

    response = post_stripe(host_client(HOST), body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "event_invalid"
    assert _nothing_stored()


def test_an_account_without_a_webhook_secret_refuses_everything(gateways, host_client):
    account = GatewayAccount.objects.get(name="stripe_main")
    account.credentials = {"secret_key": "sk_test_webhooks"}
    account.save()

    response = post_stripe(host_client(HOST), _stripe_succeeded())

    assert response.status_code == 400
    assert "no webhook_secret is configured" in response.json()["error"]["message"]
    assert _nothing_stored()


def test_unknown_account_wrong_kind_and_wrong_method_answer_json_errors(gateways, host_client):
    client = host_client(HOST)
    body = _stripe_succeeded()

    unknown = post_stripe(client, body, account="stripe_nope")
    wrong_kind = post_stripe(client, body, account="adyen_main")
    get = client.get("/webhooks/stripe/stripe_main")

    assert (unknown.status_code, wrong_kind.status_code, get.status_code) == (404, 404, 405)
    assert unknown.json()["error"]["code"] == "resource_missing"
    assert get.json()["error"]["code"] == "method_not_allowed"
    assert _nothing_stored()


def test_the_endpoint_accepts_a_trailing_slash_without_redirecting(gateways, host_client):
    body = _stripe_succeeded()

    response = host_client(HOST).post(
        "/webhooks/stripe/stripe_main/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_sign(body),
    )

    assert response.status_code == 200


def test_another_marketplace_does_not_know_this_account(gateways, host_client):
    response = post_stripe(host_client("beta.localhost"), _stripe_succeeded())

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


# ----------------------------------------------------------------- Adyen


def test_a_signed_adyen_notification_is_accepted_and_stored(gateways, host_client):
    item = adyen_item("AUTHORISATION", merchantReference="pay_x_1", pspReference="QFQTPCQ8HXSKGK82")

    response = post_adyen(host_client(HOST), adyen_body(item))

    assert response.status_code == 200
    assert response.content == b"[accepted]"
    event = InboundEvent.objects.get()
    assert (event.provider, event.event_id, event.type) == (
        "adyen",
        "AUTHORISATION:QFQTPCQ8HXSKGK82:true",
        "AUTHORISATION",
    )
    assert event.payload == item
    assert event.occurred_at == datetime(2019, 6, 28, 17, 3, 50, tzinfo=UTC)
    assert json.loads(event.body)["notificationItems"][0]["NotificationRequestItem"] == item


def test_adyen_duplicates_are_accepted_and_stored_once(gateways, host_client):
    item = adyen_item("AUTHORISATION", merchantReference="pay_x_1", pspReference="QFQTPCQ8HXSKGK82")
    client = host_client(HOST)

    answers = [post_adyen(client, adyen_body(item)).content for _ in range(3)]

    assert answers == [b"[accepted]"] * 3
    assert InboundEvent.objects.count() == 1
    assert DurableTask.objects.filter(handler=PROCESS_HANDLER).count() == 1


def test_a_batch_is_stored_item_by_item(gateways, host_client):
    items = [
        adyen_item("AUTHORISATION", pspReference="QFQTPCQ8HXSKGK82"),
        adyen_item("CAPTURE", pspReference="RH9Z8BWKT9NWQW82", originalReference="QFQTPCQ8HXSKGK82"),
    ]

    response = post_adyen(host_client(HOST), adyen_body(*items))

    assert response.content == b"[accepted]"
    assert sorted(InboundEvent.objects.values_list("event_id", flat=True)) == [
        "AUTHORISATION:QFQTPCQ8HXSKGK82:true",
        "CAPTURE:RH9Z8BWKT9NWQW82:true",
    ]


@pytest.mark.parametrize(
    ("items", "why"),
    [
        (lambda: [adyen_item("AUTHORISATION", sign_with="00" * 32)], "the HMAC signature does not match"),
        (
            lambda: [adyen_item("AUTHORISATION", sign_with=None) | {"additionalData": {}}],
            "has no additionalData.hmacSignature",
        ),
        (
            lambda: [{**adyen_item("AUTHORISATION"), "amount": {"currency": "EUR", "value": 99999}}],
            "does not match",
        ),
        (lambda: [adyen_item("AUTHORISATION"), adyen_item("CAPTURE", sign_with="11" * 32)], "item 1"),
    ],
    ids=["wrong-key", "unsigned", "tampered-amount", "one-bad-item-in-a-batch"],
)
def test_a_badly_signed_adyen_notification_is_a_400_and_nothing_is_stored(gateways, host_client, items, why):
    response = post_adyen(host_client(HOST), adyen_body(*items()))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "signature_invalid"
    assert why in error["message"]
    assert _nothing_stored()


def test_a_body_that_is_not_an_adyen_notification_is_a_400(gateways, host_client):
    responses_ = [post_adyen(host_client(HOST), body) for body in (b"not json", b'{"live": "false"}', b"[]")]

    assert [r.status_code for r in responses_] == [400, 400, 400]
    assert {r.json()["error"]["code"] for r in responses_} == {"event_invalid"}
    assert _nothing_stored()


def test_adyen_basic_auth_is_checked_when_configured(gateways, host_client):
    account = GatewayAccount.objects.get(name="adyen_main")
    account.credentials = {**account.credentials, "webhook_username": "adyen", "webhook_password": "s3cret"}
    account.save()
    body = adyen_body(adyen_item("AUTHORISATION"))
    client = host_client(HOST)

    no_auth = post_adyen(client, body)
    wrong = post_adyen(client, body, HTTP_AUTHORIZATION="Basic YWR5ZW46bm9wZQ==")  # adyen:nope
    right = post_adyen(client, body, HTTP_AUTHORIZATION="Basic YWR5ZW46czNjcmV0")  # adyen:s3cret

    assert (no_auth.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert InboundEvent.objects.count() == 1


def test_adyen_hmac_key_rotation(gateways, host_client):
    account = GatewayAccount.objects.get(name="adyen_main")
    new_key = "AB" * 32
    account.credentials = {**account.credentials, "hmac_key": [new_key, HMAC_KEY]}
    account.save()
    client = host_client(HOST)

    old = post_adyen(client, adyen_body(adyen_item("AUTHORISATION", pspReference="A1")))
    new = post_adyen(client, adyen_body(adyen_item("AUTHORISATION", pspReference="A2", sign_with=new_key)))

    assert (old.status_code, new.status_code) == (200, 200)
