"""3-D Secure at the processors, against recorded answers: the page the customer is sent to
(``GatewayResult.action_url``) and what the processor says once they come back
(``action_result``): Stripe's PaymentIntent retrieved, Adyen's ``/payments/details``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses

from apps.payments.gateways.adyen import AdyenGateway
from apps.payments.gateways.base import GatewayStatus, Outcome
from tests.payments.test_adyen_gateway import CHECKOUT, charge, config, recorded, sent
from tests.payments.test_stripe_gateway import CannedClient, intent_json, make_gateway
from tests.payments.test_stripe_gateway import charge as stripe_charge

RETURN = "https://shop.example/return?order=7&payment=pay_7Hq2"
STRIPE_PAGE = (
    "https://hooks.stripe.com/redirect/authenticate/src_1Ep6dpKQ3PM5fK2w?client_secret=src_client_secret_x"
)


# --------------------------------------------------------------------------- Stripe


def stripe_requires_action() -> dict:
    """A PaymentIntent confirmed with a return_url whose issuer wants 3-D Secure (Stripe's
    documented ``next_action.redirect_to_url``)."""
    intent = intent_json("pi_3ds", "requires_action", attempt_id="pay_7Hq2_1", amount=2500)
    intent["latest_charge"] = None
    intent["next_action"] = {
        "type": "redirect_to_url",
        "redirect_to_url": {"return_url": RETURN, "url": STRIPE_PAGE},
    }
    return intent


def test_stripe_requires_action_redirects_to_stripes_page_and_sends_our_return_url():
    client = CannedClient((200, stripe_requires_action()))
    gateway = make_gateway("http://stripe.invalid", client)

    result = gateway.authorize(
        stripe_charge("pay_7Hq2_1", "pm_card_threeDSecure2Required", return_url=RETURN)
    )

    assert (result.outcome, result.status, result.reference) == (
        Outcome.REQUIRES_ACTION,
        GatewayStatus.REQUIRES_ACTION,
        "pi_3ds",
    )
    assert result.action_url == STRIPE_PAGE
    [request] = client.sent
    assert (request.method, request.path) == ("POST", "/v1/payment_intents")
    assert request.form["return_url"] == [RETURN]
    assert request.form["confirm"] == ["true"]
    assert request.headers["Idempotency-Key"] == "pay_7Hq2_1"


def test_stripe_without_a_return_url_gives_no_page_to_redirect_to():
    intent = stripe_requires_action()
    intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
    client = CannedClient((200, intent))

    result = make_gateway("http://stripe.invalid", client).authorize(stripe_charge("pay_7Hq2_1"))

    assert (result.outcome, result.action_url) == (Outcome.REQUIRES_ACTION, "")
    assert "return_url" not in client.sent[0].form


def test_stripe_return_reads_the_payment_intent_succeeded():
    done = intent_json("pi_3ds", "succeeded", attempt_id="pay_7Hq2_1", amount=2500, fee=103)
    client = CannedClient((200, done))

    result = make_gateway("http://stripe.invalid", client).action_result(
        request=stripe_charge("pay_7Hq2_1"),
        reference="pi_3ds",
        details={"payment_intent": "pi_3ds", "payment_intent_client_secret": "pi_3ds_secret_x"},
        idempotency_key="pay_7Hq2_1:authentication",
    )

    assert (result.outcome, result.status, result.amount_captured, result.fee) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        2500,
        103,
    )
    [request] = client.sent
    assert (request.method, request.path) == ("GET", "/v1/payment_intents/pi_3ds")


def test_stripe_return_after_a_failed_challenge_is_authentication_failed():
    failed = intent_json("pi_3ds", "requires_payment_method", attempt_id="pay_7Hq2_1", amount=2500)
    failed["latest_charge"] = None
    failed["last_payment_error"] = {
        "type": "invalid_request_error",
        "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
        "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
    }

    result = make_gateway("http://stripe.invalid", CannedClient((200, failed))).action_result(
        request=stripe_charge("pay_7Hq2_1"), reference="pi_3ds", details={}, idempotency_key="k"
    )

    assert (result.outcome, result.status, result.decline_code) == (
        Outcome.DECLINED_SOFT,
        GatewayStatus.DECLINED,
        "authentication_failed",
    )


# --------------------------------------------------------------------------- Adyen


@pytest.fixture
def adyen() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def test_adyen_redirect_shopper_sends_our_return_url_and_answers_the_redirect_page(adyen):
    answer = recorded("payment_redirect_shopper")
    call = adyen.post(f"{CHECKOUT}/payments", json=answer)

    result = AdyenGateway(config()).authorize(charge(return_url=RETURN))

    assert (result.outcome, result.reference) == (Outcome.REQUIRES_ACTION, answer["pspReference"])
    assert result.action_url == answer["action"]["url"]
    body = sent(call.calls[0])
    assert body["returnUrl"] == RETURN  # the payment's, not the account's default
    assert body["authenticationData"] == {"threeDSRequestData": {"nativeThreeDS": "disabled"}}
    assert body["reference"] == "pay_7Hq2_1"
    assert call.calls[0].request.headers["Idempotency-Key"] == "pay_7Hq2_1"


def test_adyen_post_redirect_is_not_a_page_we_can_send_the_shopper_to(adyen):
    answer = recorded("payment_redirect_shopper")
    answer["action"] = {
        "type": "redirect",
        "method": "POST",
        "url": "https://test.adyen.com/hpp/3d/validate.shtml",
        "data": {"MD": "M2Rz", "PaReq": "BQAB", "TermUrl": RETURN},
        "paymentMethodType": "scheme",
    }
    adyen.post(f"{CHECKOUT}/payments", json=answer)

    result = AdyenGateway(config()).authorize(charge(return_url=RETURN))

    assert (result.outcome, result.action_url) == (Outcome.REQUIRES_ACTION, "")


@pytest.mark.parametrize(
    ("fixture", "outcome", "status", "decline_code"),
    [
        ("payment_details_authorised", Outcome.SUCCEEDED, GatewayStatus.CAPTURED, None),
        (
            "payment_details_refused_3d",
            Outcome.DECLINED_SOFT,
            GatewayStatus.DECLINED,
            "authentication_failed",
        ),
        (
            "payment_details_refused_balance",
            Outcome.DECLINED_SOFT,
            GatewayStatus.DECLINED,
            "insufficient_funds",
        ),
    ],
)
def test_adyen_return_posts_the_redirect_result_to_payments_details(
    adyen, fixture, outcome, status, decline_code
):
    call = adyen.post(f"{CHECKOUT}/payments/details", json=recorded(fixture))

    result = AdyenGateway(config()).action_result(
        request=charge(return_url=RETURN),
        reference="W3ZD3RRQ7CQM8N82",
        details={"redirectResult": "X6XtfGC3!Y..."},
        idempotency_key="pay_7Hq2_1:authentication",
    )

    assert (result.outcome, result.status, result.decline_code) == (outcome, status, decline_code)
    assert result.reference == "W3ZD3RRQ7CQM8N82"
    assert json.loads(call.calls[0].request.body) == {"details": {"redirectResult": "X6XtfGC3!Y..."}}
    assert call.calls[0].request.headers["Idempotency-Key"] == "pay_7Hq2_1:authentication"


def test_adyen_return_without_a_redirect_result_asks_nothing(adyen):
    result = AdyenGateway(config()).action_result(
        request=charge(), reference="W3ZD3RRQ7CQM8N82", details={}, idempotency_key="k"
    )

    assert result.status == GatewayStatus.REQUIRES_ACTION  # no call was made (the mock asserts it)
