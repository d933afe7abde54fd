"""3-D Secure through the payments services at Stripe and Adyen (their HTTP APIs answered with
recorded shapes): the payment's ``next_action`` is the processor's page, the return settles it
once (with the webhook arriving too), a failed authentication is never failed over, and an
expired one is closed at the processor."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs

import responses

from apps.ledger.models import LedgerEvent
from apps.payments.models import PaymentAttempt
from apps.payments.services import (
    payment_authentication_return,
    payment_intent_create,
    payments_authentication_expire,
)
from apps.webhooks.models import OutboundEvent
from tests.payments.test_adyen_gateway import recorded
from tests.webhooks.processors import (
    ADYEN_CHECKOUT,
    STRIPE_API,
    post_stripe,
    process_queued,
    stripe_body,
    stripe_event,
    stripe_intent,
)

PI = "pi_3QxThreeDSecure0001"
RETURN = "https://shop.example/order/7/done"
STRIPE_PAGE = (
    "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_1&payment_intent=pi_3QxThreeDSecure0001"
)
HOST = "alpha.localhost"


def ledger_types(payment_id: str) -> list[str]:
    return list(
        LedgerEvent.objects.filter(stream=payment_id).order_by("version").values_list("type", flat=True)
    )


def stripe_waiting(**fields) -> dict:
    return stripe_intent(
        id=PI,
        amount=2000,
        currency="usd",
        status="requires_action",
        latest_charge=None,
        next_action={
            "type": "redirect_to_url",
            "redirect_to_url": {"url": STRIPE_PAGE, "return_url": RETURN},
        },
        **fields,
    )


def test_stripe_payment_redirects_returns_succeeded_and_the_webhook_changes_nothing(
    gateways, processor, host_client
):
    processor.add(responses.POST, f"{STRIPE_API}/v1/payment_intents", json=stripe_waiting(metadata={}))
    intent = payment_intent_create(
        amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True, return_url=RETURN
    )
    attempt = intent.attempts.get()

    assert intent.status == "requires_action"
    assert intent.next_action == {
        "type": "redirect_to_url",
        "redirect_to_url": {"url": STRIPE_PAGE, "return_url": RETURN},
    }
    sent = parse_qs(processor.calls[0].request.body)
    assert sent["return_url"] == [f"{RETURN}?payment={intent.id}"]

    # The customer authenticates at Stripe and comes back: Stripe's PaymentIntent is succeeded
    done = stripe_intent(
        id=PI,
        amount=2000,
        currency="usd",
        status="succeeded",
        amount_received=2000,
        metadata={"attempt_id": attempt.id},
    )
    processor.add(responses.GET, f"{STRIPE_API}/v1/payment_intents/{PI}", json=done)
    back = payment_authentication_return(
        intent_id=intent.id,
        details={"payment": intent.id, "payment_intent": PI, "redirect_status": "succeeded"},
    )
    # ... and its webhook arrives as well
    response = post_stripe(
        host_client(HOST), stripe_body(stripe_event("payment_intent.succeeded", done, id="evt_3ds"))
    )
    assert response.status_code == 200
    process_queued()

    assert (back.status, back.amount_received) == ("succeeded", 2000)
    assert ledger_types(intent.id).count("ChargeCaptured") == 1
    assert OutboundEvent.objects.filter(object_id=intent.id, type="payment.succeeded").count() == 1


def test_stripe_failed_authentication_fails_the_payment_without_failover(gateways, processor):
    processor.add(responses.POST, f"{STRIPE_API}/v1/payment_intents", json=stripe_waiting(metadata={}))
    intent = payment_intent_create(
        amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True, return_url=RETURN
    )
    failed = stripe_intent(
        id=PI,
        amount=2000,
        currency="usd",
        status="requires_payment_method",
        latest_charge=None,
        last_payment_error={
            "type": "invalid_request_error",
            "code": "payment_intent_authentication_failure",
            "message": "The provided PaymentMethod has failed authentication.",
        },
    )
    processor.add(responses.GET, f"{STRIPE_API}/v1/payment_intents/{PI}", json=failed)

    back = payment_authentication_return(intent_id=intent.id)

    assert (back.status, back.last_error["code"]) == ("failed", "authentication_failed")
    # the simulator routed behind Stripe was not tried: only the customer can authenticate
    assert list(back.attempts.values_list("gateway_account__name", "status")) == [("stripe_main", "declined")]


def test_stripe_expired_authentication_cancels_the_payment_intent(gateways, processor):
    processor.add(responses.POST, f"{STRIPE_API}/v1/payment_intents", json=stripe_waiting(metadata={}))
    intent = payment_intent_create(
        amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True, return_url=RETURN
    )
    attempt = intent.attempts.get()
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=attempt.created_at - timedelta(hours=1))
    canceled = stripe_intent(
        id=PI,
        amount=2000,
        currency="usd",
        status="canceled",
        latest_charge=None,
        cancellation_reason="abandoned",
    )
    cancel = processor.add(responses.POST, f"{STRIPE_API}/v1/payment_intents/{PI}/cancel", json=canceled)

    assert payments_authentication_expire() == 1

    intent.refresh_from_db()
    assert (intent.status, intent.last_error["code"]) == ("failed", "authentication_expired")
    assert cancel.calls[0].request.headers["Idempotency-Key"] == f"{attempt.id}:cancel"


def test_adyen_redirect_then_payments_details(gateways, processor):
    processor.add(responses.POST, f"{ADYEN_CHECKOUT}/payments", json=recorded("payment_redirect_shopper"))
    intent = payment_intent_create(
        amount=1000, currency="eur", payment_method="8415718415172200", confirm=True, return_url=RETURN
    )
    attempt = intent.attempts.get()

    assert intent.next_action["type"] == "redirect_to_url"
    assert (
        intent.next_action["redirect_to_url"]["url"] == recorded("payment_redirect_shopper")["action"]["url"]
    )
    assert json.loads(processor.calls[0].request.body)["returnUrl"] == f"{RETURN}?payment={intent.id}"

    details = processor.add(
        responses.POST, f"{ADYEN_CHECKOUT}/payments/details", json=recorded("payment_details_authorised")
    )
    back = payment_authentication_return(
        intent_id=intent.id, details={"payment": intent.id, "redirectResult": "Ab02b4c0!"}
    )

    assert (back.status, back.amount_received) == ("succeeded", 1000)
    assert json.loads(details.calls[0].request.body) == {"details": {"redirectResult": "Ab02b4c0!"}}
    assert details.calls[0].request.headers["Idempotency-Key"] == f"{attempt.id}:authentication"
    # A second return (the customer reloads the page) asks nothing more and changes nothing
    assert (
        payment_authentication_return(intent_id=intent.id, details={"redirectResult": "Ab02b4c0!"}).status
        == "succeeded"
    )
    assert len(details.calls) == 1
    assert ledger_types(intent.id).count("ChargeCaptured") == 1


def test_adyen_refused_after_the_challenge_is_authentication_failed(gateways, processor):
    processor.add(responses.POST, f"{ADYEN_CHECKOUT}/payments", json=recorded("payment_redirect_shopper"))
    intent = payment_intent_create(
        amount=1000, currency="eur", payment_method="8415718415172200", confirm=True, return_url=RETURN
    )
    processor.add(
        responses.POST, f"{ADYEN_CHECKOUT}/payments/details", json=recorded("payment_details_refused_3d")
    )

    back = payment_authentication_return(intent_id=intent.id, details={"redirectResult": "Ab02b4c0!"})

    assert (back.status, back.last_error["code"]) == ("failed", "authentication_failed")
    assert list(back.attempts.values_list("gateway_account__name", "status")) == [("adyen_main", "declined")]
