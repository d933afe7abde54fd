"""Saved cards and merchant-initiated charges at Adyen, against recorded Checkout API answers
(fixtures/adyen, shaped as Adyen documents them), mocked at the HTTP layer only: the official SDK
builds and sends every request, and the exact bodies sent are asserted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses

from apps.payments.gateways.adyen import AdyenGateway
from apps.payments.gateways.base import CardInfo, ChargeRequest, GatewayStatus, Outcome
from tests.payments.test_adyen_gateway import ATTEMPT, CHECKOUT, MERCHANT, charge, config, recorded, sent

STORED = "M5N7TQ4TG5PFWR50"  # an Adyen storedPaymentMethodId
SAVE_KEY = "paym_7Hq2"  # our id for the method being saved
# The encrypted card details Adyen's Drop-in / Card component gives the storefront (never a PAN).
ENCRYPTED = {
    "type": "scheme",
    "encryptedCardNumber": "adyenjs_0_1_25$XUyMJyHQrLhHxpw7Ex9RH5CfDQ...",
    "encryptedExpiryMonth": "adyenjs_0_1_25$JG1Ne8ye4kUJ2uj0GBMr0W4...",
    "encryptedExpiryYear": "adyenjs_0_1_25$S9HBsjBk8Ah2C5gUbd1qeW0...",
    "encryptedSecurityCode": "adyenjs_0_1_25$bIWWBDqBClHwRm9MoRYpHV8...",
    "holderName": "J. Smith",
}
TOKEN = json.dumps(ENCRYPTED)


@pytest.fixture
def adyen() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def gateway() -> AdyenGateway:
    return AdyenGateway(config())


def save(gw: AdyenGateway, *, customer_reference: str | None = "cus_42", idempotency_key: str = SAVE_KEY):
    return gw.save_method(token=TOKEN, customer_reference=customer_reference, idempotency_key=idempotency_key)


# ----------------------------------------------------------------- saving: zero-value authorisation


@pytest.mark.parametrize("answer", ["zero_auth_stored", "zero_auth_stored_recurring"])
def test_a_zero_value_authorisation_stores_the_card(adyen, gateway, answer):
    # given Adyen authorises zero and stores the card (newer tokenization.* or older recurring.* fields)
    adyen.post(f"{CHECKOUT}/payments", json=recorded(answer))

    # when we save the shopper's card
    saved = save(gateway)

    # then the request is a zero-value authorisation storing the card for unscheduled use
    (call,) = adyen.calls
    assert sent(call) == {
        "merchantAccount": MERCHANT,
        "reference": SAVE_KEY,
        "amount": {"value": 0, "currency": "EUR"},
        "paymentMethod": ENCRYPTED,
        "storePaymentMethod": True,
        "shopperInteraction": "Ecommerce",
        "recurringProcessingModel": "UnscheduledCardOnFile",
        "shopperReference": "cus_42",
        "returnUrl": "https://shop.example/return",
    }
    assert call.request.headers["Idempotency-Key"] == SAVE_KEY
    # and the credential is the stored method under its shopper, with what Adyen says of the card
    assert saved.ok
    assert (saved.reference, saved.extra) == ("QC4RJZP2Q5HBD582", {"shopper_reference": "cus_42"})
    assert saved.card is not None
    assert (saved.card.brand, saved.card.last4) == ("mastercard", "0004")
    assert (saved.exp_month, saved.exp_year) == (8, 2031)
    assert saved.network_transaction_id == "MCC0YR5MI0611"


def test_a_stored_card_reads_every_detail_adyen_returns(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("zero_auth_stored"))

    saved = save(gateway)

    assert saved.card == CardInfo(brand="mastercard", country="GB", funding="debit", last4="0004")
    assert saved.fingerprint == "E617835162737719"  # Adyen's alias of the card number
    assert "5555" not in json.dumps(saved.extra)


def test_a_card_saved_without_a_customer_is_stored_under_the_saves_own_key(adyen):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("zero_auth_stored_recurring") | {"additionalData": {
        "recurring.recurringDetailReference": "QC4RJZP2Q5HBD582", "cardSummary": "0004"}})  # fmt: skip

    saved = save(AdyenGateway(config(zero_auth_currency="USD")), customer_reference=None)

    body = sent(adyen.calls[0])
    assert (body["shopperReference"], body["amount"]) == (SAVE_KEY, {"value": 0, "currency": "USD"})
    assert saved.ok and saved.extra == {"shopper_reference": SAVE_KEY}
    assert saved.card == CardInfo(brand="unknown", country="", funding="", last4="0004")
    assert (saved.exp_month, saved.exp_year, saved.fingerprint, saved.network_transaction_id) == (
        None,
        None,
        "",
        "",
    )


def test_a_refused_zero_value_authorisation_is_card_declined(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("zero_auth_refused"))

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, "card_declined")
    assert "Refused" in saved.message and "adyen refusal 2" in saved.message


@pytest.mark.parametrize(
    "answer", ["zero_auth_challenge_shopper", "payment_identify_shopper", "payment_redirect_shopper"]
)
def test_a_zero_value_authorisation_wanting_3ds_is_authentication_required(adyen, gateway, answer):
    adyen.post(f"{CHECKOUT}/payments", json=recorded(answer))

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, "authentication_required")
    assert "checkout" in saved.message


def test_authorised_but_not_stored_is_a_gateway_error(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, "gateway_error")
    assert "stored nothing" in saved.message


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (500, "error_500", "gateway_error"),
        (401, "error_401", "gateway_error"),
        (422, "error_422_validation", "payment_method_invalid"),
    ],
)
def test_saving_failures_are_answers(adyen, gateway, status, answer, code):
    adyen.post(f"{CHECKOUT}/payments", json=recorded(answer), status=status)

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, code)
    assert saved.message.startswith("save payment method: ")


def test_a_save_that_failed_with_a_500_is_sent_again_as_it_was(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("error_500"), status=500)
    adyen.post(f"{CHECKOUT}/payments", json=recorded("zero_auth_stored"))

    first, second = save(gateway), save(gateway)

    assert (first.ok, first.code) == (False, "gateway_error")
    assert second.ok and second.reference == "QC4RJZP2Q5HBD582"
    one, two = adyen.calls
    assert one.request.headers["Idempotency-Key"] == two.request.headers["Idempotency-Key"] == SAVE_KEY
    assert sent(one) == sent(two)


def test_a_token_that_is_not_adyens_json_is_refused_without_a_call(adyen, gateway):
    saved = gateway.save_method(
        token='{"type": "scheme"', customer_reference="cus_42", idempotency_key=SAVE_KEY
    )

    assert (saved.ok, saved.code) == (False, "payment_method_invalid")
    assert len(adyen.calls) == 0


# ----------------------------------------------------------------- merchant-initiated charges


@pytest.mark.parametrize(("recurring", "model"), [(True, "Subscription"), (False, "UnscheduledCardOnFile")])
def test_a_merchant_initiated_charge_is_contauth_with_the_stored_card_and_its_network_id(
    adyen, gateway, recurring, model
):
    # given Adyen authorises the charge
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised_contauth"))

    # when we charge a stored card without the shopper
    result = gateway.authorize(
        charge(
            payment_method=STORED,
            customer_reference="cus_other",
            off_session=True,
            recurring=recurring,
            network_transaction_id="831106128458302",
            credential={"reference": STORED, "shopper_reference": "cus_42"},
        )
    )

    # then the body is Adyen's documented merchant-initiated payment
    (call,) = adyen.calls
    assert sent(call) == {
        "merchantAccount": MERCHANT,
        "reference": ATTEMPT,
        "amount": {"value": 1000, "currency": "EUR"},
        "paymentMethod": {"type": "scheme", "storedPaymentMethodId": STORED},
        "shopperReference": "cus_42",  # the shopper the card is stored under, not the payment's
        "shopperInteraction": "ContAuth",
        "recurringProcessingModel": model,
        "returnUrl": "https://shop.example/return",
        "additionalData": {"networkTxReference": "831106128458302"},
    }
    assert call.request.headers["Idempotency-Key"] == ATTEMPT
    assert (result.outcome, result.status, result.reference) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        "NC6HT9CRT65ZGN82",
    )
    assert result.network_transaction_id == "831106128458302"
    assert result.saved is None


def test_a_merchant_initiated_authorisation_only_keeps_both_additional_fields(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised_contauth"))

    gateway.authorize(
        charge(
            capture=False,
            off_session=True,
            network_transaction_id="831106128458302",
            credential={"reference": "8415718415172200", "shopper_reference": "cus_42"},
        )
    )

    assert sent(adyen.calls[0])["additionalData"] == {
        "networkTxReference": "831106128458302",
        "manualCapture": "true",
    }


def test_a_merchant_initiated_charge_without_a_network_id_sends_none(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_refused_not_enough_balance"))

    result = gateway.authorize(charge(off_session=True, credential={"reference": "8415718415172200"}))

    body = sent(adyen.calls[0])
    assert (body["shopperInteraction"], body["recurringProcessingModel"]) == (
        "ContAuth",
        "UnscheduledCardOnFile",
    )
    assert "additionalData" not in body
    assert (result.outcome, result.decline_code, result.network_transaction_id) == (
        Outcome.DECLINED_SOFT,
        "insufficient_funds",
        "",
    )


# ----------------------------------------------------------------- customer-initiated, storing the card


@pytest.mark.parametrize(
    ("usage", "recurring", "model"),
    [
        ("on_session", False, "CardOnFile"),
        ("off_session", False, "UnscheduledCardOnFile"),
        ("off_session", True, "Subscription"),
    ],
)
def test_a_charge_that_stores_the_card_returns_its_credential(adyen, gateway, usage, recurring, model):
    # given Adyen authorises the payment and stores the card
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised_stored"))

    # when the shopper pays with new card details and agrees to store them
    result = gateway.authorize(charge(payment_method=TOKEN, setup_future_usage=usage, recurring=recurring))

    # then the payment asks Adyen to store the card under our customer
    (call,) = adyen.calls
    assert sent(call) == {
        "merchantAccount": MERCHANT,
        "reference": ATTEMPT,
        "amount": {"value": 1000, "currency": "EUR"},
        "paymentMethod": ENCRYPTED,
        "shopperReference": "cus_42",
        "storePaymentMethod": True,
        "shopperInteraction": "Ecommerce",
        "recurringProcessingModel": model,
        "returnUrl": "https://shop.example/return",
        "authenticationData": {"threeDSRequestData": {"nativeThreeDS": "disabled"}},
    }
    # and the result carries the charge, its network id and the stored card's credential
    assert (result.outcome, result.status, result.amount_captured) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        1000,
    )
    assert result.network_transaction_id == "831106128458302"
    assert result.saved is not None and result.saved.ok
    assert (result.saved.reference, result.saved.extra) == (STORED, {"shopper_reference": "cus_42"})
    assert result.saved.card == CardInfo(brand="visa", country="NL", funding="credit", last4="1111")
    assert (result.saved.exp_month, result.saved.exp_year) == (3, 2030)
    assert (result.saved.fingerprint, result.saved.network_transaction_id) == (
        "H167852639363479",
        "831106128458302",
    )


def test_a_charge_storing_the_card_without_a_customer_stores_it_under_the_attempt(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised_stored"))

    gateway.authorize(charge(payment_method=TOKEN, customer_reference=None, setup_future_usage="off_session"))

    assert sent(adyen.calls[0])["shopperReference"] == ATTEMPT


def test_a_refused_charge_that_would_have_stored_stores_nothing(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_refused_not_enough_balance"))

    result = gateway.authorize(charge(payment_method=TOKEN, setup_future_usage="off_session"))

    assert result.outcome == Outcome.DECLINED_SOFT
    assert (result.saved, result.network_transaction_id) == (None, "")


def test_a_charge_not_asking_to_store_reports_no_saved_card_but_its_network_id(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised_stored"))

    result = gateway.authorize(
        ChargeRequest(attempt_id=ATTEMPT, amount=1000, currency="EUR", payment_method=TOKEN)
    )

    assert "storePaymentMethod" not in sent(adyen.calls[0])
    assert (result.saved, result.network_transaction_id) == (None, "831106128458302")
