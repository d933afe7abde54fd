"""The Adyen adapter against recorded Checkout API answers (fixtures/adyen), mocked at the HTTP
layer only: the official SDK builds and sends every request through ``requests``, and
``responses`` answers it. Transport failures are real exceptions captured from real sockets."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses

from apps.payments.gateways.adyen import AdyenGateway
from apps.payments.gateways.base import (
    ChargeRequest,
    GatewayCallError,
    GatewayConfig,
    GatewayStatus,
    Outcome,
)

FIXTURES = Path(__file__).parent / "fixtures" / "adyen"
CHECKOUT = "https://checkout-test.adyen.com/v72"
MERCHANT = "MarketplaceECOM"
ATTEMPT = "pay_7Hq2_1"
PSP = "V4HZ4RBFJGXXGN82"
TOKEN = "8415718415172200"  # an Adyen storedPaymentMethodId


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def config(**settings) -> GatewayConfig:
    return GatewayConfig(
        account_id="adyen_main",
        credentials={"api_key": "AQE1test-key", "merchant_account": MERCHANT},
        settings={"return_url": "https://shop.example/return", **settings},
        timeout_seconds=10.0,
    )


def charge(**overrides) -> ChargeRequest:
    fields: dict = {
        "attempt_id": ATTEMPT,
        "amount": 1000,
        "currency": "EUR",
        "payment_method": TOKEN,
        "customer_reference": "cus_42",
    }
    return ChargeRequest(**(fields | overrides))


def sent(call) -> dict:
    return json.loads(call.request.body)


@pytest.fixture
def adyen() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def gateway() -> AdyenGateway:
    return AdyenGateway(config())


# ----------------------------------------------------------------- real transport failures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connection_refused() -> requests.RequestException:
    """What requests raises when nothing listens: the request never left."""
    try:
        requests.post(f"http://127.0.0.1:{_free_port()}/payments", json={}, timeout=1)
    except requests.RequestException as exc:
        return exc
    raise AssertionError("expected a refused connection")


@pytest.fixture(scope="module")
def read_timeout() -> Iterator[requests.RequestException]:
    """What requests raises when the server takes the request and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        try:
            requests.post(f"http://127.0.0.1:{server.getsockname()[1]}/payments", json={}, timeout=(1, 0.2))
        except requests.RequestException as exc:
            yield exc
            return
    raise AssertionError("expected a read timeout")


@pytest.fixture(scope="module")
def dropped_after_send() -> Iterator[requests.RequestException]:
    """What requests raises when the server reads the request and closes without answering."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def take_and_drop() -> None:
            conn, _ = server.accept()
            conn.recv(65536)
            conn.close()

        threading.Thread(target=take_and_drop, daemon=True).start()
        try:
            requests.post(f"http://127.0.0.1:{server.getsockname()[1]}/payments", json={}, timeout=(1, 2))
        except requests.RequestException as exc:
            yield exc
            return
    raise AssertionError("expected a dropped connection")


# ----------------------------------------------------------------- authorise


def test_auto_capture_success_sends_reference_amount_and_idempotency_key(adyen, gateway):
    # given Adyen authorises the payment
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))

    # when we charge with capture
    result = gateway.authorize(charge())

    # then the request is the documented /payments body, keyed by our attempt id
    (call,) = adyen.calls
    assert call.request.url == f"{CHECKOUT}/payments"
    assert sent(call) == {
        "merchantAccount": MERCHANT,
        "reference": ATTEMPT,
        "amount": {"value": 1000, "currency": "EUR"},
        "paymentMethod": {"type": "scheme", "storedPaymentMethodId": TOKEN},
        "shopperReference": "cus_42",
        "shopperInteraction": "Ecommerce",
        "recurringProcessingModel": "CardOnFile",
        "returnUrl": "https://shop.example/return",
        "authenticationData": {"threeDSRequestData": {"nativeThreeDS": "disabled"}},
    }
    assert call.request.headers["Idempotency-Key"] == ATTEMPT
    assert call.request.headers["x-api-key"] == "AQE1test-key"
    assert call.request.req_kwargs["timeout"] == (3.0, 10.0)
    # and the charge is captured
    assert result.outcome == Outcome.SUCCEEDED
    assert result.status == GatewayStatus.CAPTURED
    assert result.reference == PSP
    assert (result.amount_authorized, result.amount_captured) == (1000, 1000)
    assert result.raw["resultCode"] == "Authorised"
    assert "cardSummary" not in str(result.raw)


def test_manual_capture_then_capture(adyen, gateway):
    # given an authorisation only
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))
    adyen.post(f"{CHECKOUT}/payments/{PSP}/captures", json=recorded("capture_received"), status=201)

    authorized = gateway.authorize(charge(capture=False))

    assert sent(adyen.calls[0])["additionalData"] == {"manualCapture": "true"}
    assert authorized.outcome == Outcome.SUCCEEDED
    assert authorized.status == GatewayStatus.AUTHORIZED
    assert (authorized.amount_authorized, authorized.amount_captured) == (1000, 0)

    # when we capture it
    captured = gateway.capture(
        attempt_id=ATTEMPT, reference=PSP, amount=1000, currency="EUR", idempotency_key=f"{ATTEMPT}:capture"
    )

    # then the capture goes to the payment's pspReference with our key
    call = adyen.calls[1]
    assert call.request.url == f"{CHECKOUT}/payments/{PSP}/captures"
    assert sent(call) == {
        "merchantAccount": MERCHANT,
        "amount": {"value": 1000, "currency": "EUR"},
        "reference": f"{ATTEMPT}:capture",
    }
    assert call.request.headers["Idempotency-Key"] == f"{ATTEMPT}:capture"
    # and Adyen's "received" is reported as captured, pending the CAPTURE webhook
    assert captured.outcome == Outcome.SUCCEEDED
    assert captured.status == GatewayStatus.CAPTURED
    assert captured.reference == PSP
    assert captured.amount_captured == 1000
    assert captured.raw["status"] == "received"
    assert captured.raw["pspReference"] == "QJCKPMKXH7DXDS82"


def test_capture_delay_setting_pins_auto_capture(adyen):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))

    AdyenGateway(config(capture_delay_hours=0)).authorize(charge())

    body = sent(adyen.calls[0])
    assert body["captureDelayHours"] == 0
    assert "additionalData" not in body


def test_partial_refunds(adyen, gateway):
    # given a captured charge of 1000
    adyen.post(f"{CHECKOUT}/payments/{PSP}/refunds", json=recorded("refund_received"), status=201)
    adyen.post(f"{CHECKOUT}/payments/{PSP}/refunds", json=recorded("refund_received_second"), status=201)

    # when we refund 300 then 700
    first = gateway.refund(
        attempt_id=ATTEMPT,
        reference=PSP,
        refund_id="re_9fK2",
        amount=300,
        currency="EUR",
        idempotency_key="re_9fK2",
    )
    second = gateway.refund(
        attempt_id=ATTEMPT,
        reference=PSP,
        refund_id="re_Lm4x",
        amount=700,
        currency="EUR",
        idempotency_key="re_Lm4x",
    )

    # then each refund is its own request, referenced and keyed by our refund id
    assert [sent(c) for c in adyen.calls] == [
        {"merchantAccount": MERCHANT, "amount": {"value": 300, "currency": "EUR"}, "reference": "re_9fK2"},
        {"merchantAccount": MERCHANT, "amount": {"value": 700, "currency": "EUR"}, "reference": "re_Lm4x"},
    ]
    assert [c.request.headers["Idempotency-Key"] for c in adyen.calls] == ["re_9fK2", "re_Lm4x"]
    assert [c.request.url for c in adyen.calls] == [f"{CHECKOUT}/payments/{PSP}/refunds"] * 2
    # and each result carries the refund's own pspReference and amount
    assert (first.outcome, first.status, first.reference, first.amount_refunded) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        "R6KXSDJ5QBZB6T82",
        300,
    )
    assert (second.reference, second.amount_refunded) == ("ZC5NHK6SX8WW4T82", 700)
    assert second.raw["paymentPspReference"] == PSP


# ----------------------------------------------------------------- declines


def test_not_enough_balance_is_a_soft_decline(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_refused_not_enough_balance"))

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.DECLINED_SOFT
    assert result.status == GatewayStatus.DECLINED
    assert result.decline_code == "insufficient_funds"
    assert result.advice_code is None
    assert result.reference == "FKSPNCQ8HXSKGK82"
    assert result.message == "Refused: Not enough balance (adyen refusal 12)"
    assert result.raw["refusalReasonCode"] == "12"


def test_expired_card_is_a_hard_decline(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_refused_expired_card"))

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.DECLINED_HARD
    assert result.status == GatewayStatus.DECLINED
    assert result.decline_code == "expired_card"


@pytest.mark.parametrize(
    ("code", "reason", "outcome", "decline_code", "advice_code"),
    [
        ("2", "Refused", Outcome.DECLINED_SOFT, "generic_decline", None),
        ("4", "Acquirer Error", Outcome.DECLINED_SOFT, "processing_error", None),
        ("9", "Issuer Unavailable", Outcome.DECLINED_SOFT, "issuer_not_available", None),
        ("38", "Authentication required", Outcome.DECLINED_SOFT, "authentication_required", None),
        ("20", "FRAUD", Outcome.DECLINED_HARD, "fraudulent", None),
        ("25", "Restricted Card", Outcome.DECLINED_HARD, "restricted_card", None),
        (
            "26",
            "Revocation Of Auth",
            Outcome.DECLINED_HARD,
            "revocation_of_authorization",
            "do_not_try_again",
        ),
        (
            "46",
            "Transaction blocked by Adyen to prevent excessive retry fees",
            Outcome.DECLINED_HARD,
            "retries_blocked",
            "do_not_try_again",
        ),
        ("99", "Something new", Outcome.DECLINED_SOFT, "generic_decline", None),
    ],
)
def test_refusal_reasons(adyen, gateway, code, reason, outcome, decline_code, advice_code):
    answer = recorded("payment_refused_not_enough_balance") | {
        "refusalReasonCode": code,
        "refusalReason": reason,
    }
    adyen.post(f"{CHECKOUT}/payments", json=answer)

    result = gateway.authorize(charge())

    assert (result.outcome, result.decline_code, result.advice_code) == (outcome, decline_code, advice_code)


def test_merchant_advice_do_not_try_again_makes_a_generic_refusal_hard(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_refused_do_not_try_again"))

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.DECLINED_HARD
    assert result.decline_code == "generic_decline"
    assert result.advice_code == "do_not_try_again"
    assert result.raw["additionalData"] == {
        "refusalReasonRaw": "05 : Do not honor",
        "merchantAdviceCode": "03: Do not try again",
    }


# ----------------------------------------------------------------- other result codes


@pytest.mark.parametrize(
    ("fixture", "action_type"),
    [("payment_redirect_shopper", "redirect"), ("payment_identify_shopper", "threeDS2")],
)
def test_three_d_secure_requires_action(adyen, gateway, fixture, action_type):
    answer = recorded(fixture)
    adyen.post(f"{CHECKOUT}/payments", json=answer)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.REQUIRES_ACTION
    assert result.status == GatewayStatus.REQUIRES_ACTION
    assert result.reference == answer["pspReference"]
    assert result.raw["action"] == answer["action"]  # the storefront needs it to continue
    assert result.raw["action"]["type"] == action_type
    # A GET redirect is a page to send the shopper to; an in-page threeDS2 action is not.
    assert result.action_url == (answer["action"]["url"] if action_type == "redirect" else "")


def test_pending_is_unknown_until_the_webhook(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_pending"))

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.UNKNOWN
    assert result.status == GatewayStatus.UNKNOWN
    assert result.reference == "CTQWK6TZ8NG5JZ82"


def test_result_code_error_is_a_gateway_error(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_result_error"))

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.GATEWAY_ERROR
    assert result.status == GatewayStatus.ERROR
    assert result.message == "Error: Acquirer Error"


# ----------------------------------------------------------------- HTTP errors


def test_500_is_a_gateway_error(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("error_500"), status=500)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.GATEWAY_ERROR
    assert result.status == GatewayStatus.ERROR
    assert result.decline_code == "000"
    assert result.message == "HTTP 500 000: An unknown error occurred"
    assert result.raw["httpStatus"] == 500


def test_401_is_a_gateway_error(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("error_401"), status=401)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.GATEWAY_ERROR


def test_422_validation_is_a_hard_decline_of_the_request(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("error_422_validation"), status=422)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.DECLINED_HARD
    assert result.status == GatewayStatus.ERROR
    assert result.decline_code == "invalid_request"
    assert result.message == "HTTP 422 101: Invalid card number"
    assert result.raw["errorCode"] == "101"


def test_422_request_in_progress_is_unknown(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("error_422_in_progress"), status=422)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.UNKNOWN


def test_504_from_a_proxy_is_unknown(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", body="<html>504 Gateway Time-out</html>", status=504)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.UNKNOWN
    assert result.status == GatewayStatus.UNKNOWN


# ----------------------------------------------------------------- transport failures


def test_connection_refused_is_a_gateway_error(adyen, gateway, connection_refused):
    adyen.post(f"{CHECKOUT}/payments", body=connection_refused)

    result = gateway.authorize(charge())

    assert result.outcome == Outcome.GATEWAY_ERROR
    assert result.status == GatewayStatus.ERROR
    assert result.message.startswith("ConnectionError:")


def test_timeout_after_send_is_unknown_and_a_replay_resolves_it(adyen, gateway, read_timeout):
    # given the first answer is lost
    adyen.post(f"{CHECKOUT}/payments", body=read_timeout)
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))

    lost = gateway.authorize(charge())

    assert lost.outcome == Outcome.UNKNOWN
    assert lost.status == GatewayStatus.UNKNOWN
    assert lost.message.startswith("ReadTimeout:")

    # when the same attempt is replayed, Adyen answers it under the same idempotency key
    replayed = gateway.authorize(charge())

    assert [c.request.headers["Idempotency-Key"] for c in adyen.calls] == [ATTEMPT, ATTEMPT]
    assert sent(adyen.calls[0]) == sent(adyen.calls[1])
    assert (replayed.outcome, replayed.reference) == (Outcome.SUCCEEDED, PSP)


def test_connection_dropped_after_send_is_unknown(adyen, gateway, dropped_after_send):
    adyen.post(f"{CHECKOUT}/payments/{PSP}/refunds", body=dropped_after_send)

    result = gateway.refund(
        attempt_id=ATTEMPT,
        reference=PSP,
        refund_id="re_9fK2",
        amount=300,
        currency="EUR",
        idempotency_key="re_9fK2",
    )

    assert result.outcome == Outcome.UNKNOWN


# ----------------------------------------------------------------- cancel and retrieve


def test_technical_cancel_by_our_reference(adyen, gateway):
    # given an attempt whose outcome we never learnt (no pspReference)
    adyen.post(f"{CHECKOUT}/cancels", json=recorded("technical_cancel_received"), status=201)

    # when we cancel it without a reference
    result = gateway.cancel(attempt_id=ATTEMPT, reference=None, idempotency_key=f"{ATTEMPT}:cancel")

    # then Adyen is asked to cancel the payment we referenced as the attempt id
    (call,) = adyen.calls
    assert call.request.url == f"{CHECKOUT}/cancels"
    assert sent(call) == {
        "merchantAccount": MERCHANT,
        "paymentReference": ATTEMPT,
        "reference": f"{ATTEMPT}:cancel",
    }
    assert call.request.headers["Idempotency-Key"] == f"{ATTEMPT}:cancel"
    # and the request is accepted, but whether a payment was voided is still unknown
    assert result.outcome == Outcome.SUCCEEDED
    assert result.status == GatewayStatus.UNKNOWN
    assert result.reference is None
    assert result.raw["paymentReference"] == ATTEMPT
    assert result.raw["status"] == "received"


def test_cancel_by_psp_reference(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments/{PSP}/cancels", json=recorded("cancel_received"), status=201)

    result = gateway.cancel(attempt_id=ATTEMPT, reference=PSP, idempotency_key=f"{ATTEMPT}:cancel")

    (call,) = adyen.calls
    assert sent(call) == {"merchantAccount": MERCHANT, "reference": f"{ATTEMPT}:cancel"}
    assert call.request.headers["Idempotency-Key"] == f"{ATTEMPT}:cancel"
    # and the void is requested, but only the CANCELLATION webhook confirms it
    assert (result.outcome, result.status, result.reference) == (
        Outcome.SUCCEEDED,
        GatewayStatus.UNKNOWN,
        PSP,
    )
    assert result.raw["status"] == "received"


def test_retrieve_is_unknown_without_calling_adyen(adyen, gateway):
    result = gateway.retrieve(attempt_id=ATTEMPT, reference=PSP)

    assert (result.outcome, result.status, result.reference) == (Outcome.UNKNOWN, GatewayStatus.UNKNOWN, PSP)
    assert len(adyen.calls) == 0


# ----------------------------------------------------------------- requests we build


def test_off_session_charge_is_merchant_initiated(adyen, gateway):
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))

    gateway.authorize(charge(off_session=True))

    body = sent(adyen.calls[0])
    assert (body["shopperInteraction"], body["recurringProcessingModel"]) == (
        "ContAuth",
        "UnscheduledCardOnFile",
    )


def test_encrypted_card_details_pass_through(adyen, gateway):
    details = {
        "type": "scheme",
        "encryptedCardNumber": "adyenjs_0_1_25$abc",
        "encryptedSecurityCode": "adyenjs$x",
    }
    adyen.post(f"{CHECKOUT}/payments", json=recorded("payment_authorised"))

    gateway.authorize(charge(payment_method=json.dumps(details), customer_reference=None))

    body = sent(adyen.calls[0])
    assert body["paymentMethod"] == details
    assert "shopperInteraction" not in body
    assert "shopperReference" not in body


def test_live_environment_uses_the_live_endpoint_prefix(adyen):
    live = AdyenGateway(config(environment="live", live_endpoint_prefix="1797a841fbb37ca7-AdyenDemo"))
    url = "https://1797a841fbb37ca7-AdyenDemo-checkout-live.adyenpayments.com/checkout/v72/payments"
    adyen.post(url, json=recorded("payment_authorised"))

    result = live.authorize(charge())

    assert result.outcome == Outcome.SUCCEEDED


@pytest.mark.parametrize(
    ("credentials", "settings"),
    [
        ({"api_key": "k"}, {}),
        ({"merchant_account": MERCHANT}, {}),
        ({"api_key": "k", "merchant_account": MERCHANT}, {"environment": "live"}),
        ({"api_key": "k", "merchant_account": MERCHANT}, {"environment": "prod"}),
    ],
)
def test_bad_configuration_is_a_programming_error(credentials, settings):
    with pytest.raises(GatewayCallError):
        AdyenGateway(GatewayConfig(account_id="adyen_main", credentials=credentials, settings=settings))


def test_registry_serves_adyen():
    from apps.payments.gateways.registry import gateway_for

    assert isinstance(gateway_for("adyen", config()), AdyenGateway)
