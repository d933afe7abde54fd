"""Saved cards and merchant-initiated charges at Stripe, against canned answers shaped as Stripe
documents its objects (docs.stripe.com/api: Customer, SetupIntent, SetupAttempt, PaymentMethod,
PaymentIntent, Charge; errors as docs.stripe.com/error-codes), sent through the real SDK: what
goes on the wire is the SDK's own form encoding, asserted exactly."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apps.payments.gateways.base import CardInfo, ChargeRequest, GatewayStatus, Outcome
from tests.payments.test_stripe_gateway import CannedClient, error_json, make_gateway

PM = "pm_1Q0PsIJvEtkwdCNYMSaVuRz6"
STRIPE_CUSTOMER = "cus_QXg1o8vcGmoR32"
NTI = "483297487231504"  # a Visa transaction id, as card networks return them
SAVE_KEY = "paym_7Hq2"  # our id for the method being saved

# A card PaymentMethod (docs.stripe.com/api/payment_methods/object), trimmed, attached.
PAYMENT_METHOD: dict[str, Any] = {
    "id": PM,
    "object": "payment_method",
    "type": "card",
    "customer": STRIPE_CUSTOMER,
    "livemode": False,
    "created": 1726673582,
    "billing_details": {"address": {}, "email": None, "name": None, "phone": None},
    "card": {
        "brand": "visa",
        "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
        "country": "US",
        "display_brand": "visa",
        "exp_month": 8,
        "exp_year": 2030,
        "fingerprint": "Xt5EWLLDS7FJjR1c",
        "funding": "credit",
        "last4": "4242",
        "networks": {"available": ["visa"], "preferred": None},
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    },
    "metadata": {},
}

CUSTOMER: dict[str, Any] = {
    "id": STRIPE_CUSTOMER,
    "object": "customer",
    "created": 1726673500,
    "email": None,
    "livemode": False,
    "metadata": {"customer_reference": "cus_ours"},
    "name": None,
}

NO_CUSTOMERS: dict[str, Any] = {
    "object": "search_result",
    "data": [],
    "has_more": False,
    "next_page": None,
    "url": "/v1/customers/search",
}


def setup_intent(status: str, **fields: Any) -> dict[str, Any]:
    """A SetupIntent (docs.stripe.com/api/setup_intents/object) as ``expand[]=payment_method``
    and ``expand[]=latest_attempt`` return it."""
    intent: dict[str, Any] = {
        "id": "seti_1Pgag7B7WZ01zgkWSgwGdb8Z",
        "object": "setup_intent",
        "client_secret": "seti_1Pgag7B7WZ01zgkWSgwGdb8Z_secret_QXg2AQLdBxJwtY51IkwvUaBVsnCqPSp",
        "created": 1726673590,
        "customer": STRIPE_CUSTOMER,
        "last_setup_error": None,
        "latest_attempt": {
            "id": "setatt_1Pgag8B7WZ01zgkWbb4ZtT3l",
            "object": "setup_attempt",
            "customer": STRIPE_CUSTOMER,
            "payment_method": PM,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "checks": {
                        "address_line1_check": None,
                        "address_postal_code_check": None,
                        "cvc_check": "pass",
                    },
                    "country": "US",
                    "exp_month": 8,
                    "exp_year": 2030,
                    "fingerprint": "Xt5EWLLDS7FJjR1c",
                    "funding": "credit",
                    "last4": "4242",
                    "network": "visa",
                    "three_d_secure": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "setup_error": None,
            "setup_intent": "seti_1Pgag7B7WZ01zgkWSgwGdb8Z",
            "status": status if status in ("succeeded", "requires_action") else "failed",
            "usage": "off_session",
        },
        "livemode": False,
        "metadata": {"saved_with": SAVE_KEY},
        "next_action": None,
        "payment_method": copy.deepcopy(PAYMENT_METHOD),
        "payment_method_types": ["card"],
        "status": status,
        "usage": "off_session",
    }
    return intent | fields


def payment_intent(status: str = "succeeded", **fields: Any) -> dict[str, Any]:
    """A PaymentIntent (docs.stripe.com/api/payment_intents/object) with ``latest_charge``
    expanded; its charge's card carries the network transaction id (docs.stripe.com/api/charges/
    object, ``payment_method_details.card.network_transaction_id``)."""
    intent: dict[str, Any] = {
        "id": "pi_3Q0PsKJvEtkwdCNY0d1Xsxxq",
        "object": "payment_intent",
        "amount": 2500,
        "amount_received": 2500 if status == "succeeded" else 0,
        "capture_method": "automatic",
        "created": 1726673600,
        "currency": "usd",
        "customer": None,
        "last_payment_error": None,
        "latest_charge": {
            "id": "ch_3Q0PsKJvEtkwdCNY0bJ6ZNt2",
            "object": "charge",
            "amount": 2500,
            "amount_captured": 2500,
            "amount_refunded": 0,
            "balance_transaction": {
                "id": "txn_3Q0PsKJvEtkwdCNY0v0Yw7Bq",
                "object": "balance_transaction",
                "fee": 103,
            },
            "captured": True,
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "country": "US",
                    "exp_month": 8,
                    "exp_year": 2030,
                    "fingerprint": "Xt5EWLLDS7FJjR1c",
                    "funding": "credit",
                    "last4": "4242",
                    "network": "visa",
                    "network_transaction_id": NTI,
                },
                "type": "card",
            },
            "status": "succeeded",
        },
        "metadata": {"attempt_id": "pay_s_1"},
        "next_action": None,
        "payment_method": PM,
        "setup_future_usage": None,
        "status": status,
    }
    return intent | fields


def gateway_with(*answers: tuple[int, dict]):
    client = CannedClient(*answers)
    return make_gateway("http://stripe.invalid", client), client


def form(sent) -> dict[str, str]:
    """A request's form, one value per key (as the SDK encodes it)."""
    return {key: values[0] for key, values in sent.form.items()}


def save(gateway, *, customer_reference: str | None = "cus_ours", idempotency_key: str = SAVE_KEY):
    return gateway.save_method(
        token=PM, customer_reference=customer_reference, idempotency_key=idempotency_key
    )


# --------------------------------------------------------------------------- saving: SetupIntent


def test_saving_confirms_an_off_session_setup_intent_for_the_customers_stripe_customer():
    # given no Stripe Customer for our customer yet, and Stripe sets the card up
    gateway, client = gateway_with((200, NO_CUSTOMERS), (200, CUSTOMER), (200, setup_intent("succeeded")))

    # when we save the customer's card
    saved = save(gateway)

    # then our customer's Stripe Customer is looked up, created once (keyed by our customer id)...
    search, create_customer, create_setup = client.sent
    assert (search.method, search.path, form(search)) == (
        "GET",
        "/v1/customers/search",
        {"query": "metadata['customer_reference']:'cus_ours'", "limit": "10"},
    )
    assert (create_customer.method, create_customer.path) == ("POST", "/v1/customers")
    assert form(create_customer) == {"metadata[customer_reference]": "cus_ours"}
    assert create_customer.headers["Idempotency-Key"] == "customer_cus_ours"
    # ...and a SetupIntent is confirmed for it, for later off-session use, keyed by our method id
    assert (create_setup.method, create_setup.path) == ("POST", "/v1/setup_intents")
    assert form(create_setup) == {
        "payment_method": PM,
        "payment_method_types[0]": "card",
        "confirm": "true",
        "usage": "off_session",
        "customer": STRIPE_CUSTOMER,
        "metadata[saved_with]": SAVE_KEY,
        "metadata[customer_reference]": "cus_ours",
        "expand[0]": "payment_method",
        "expand[1]": "latest_attempt",
    }
    assert create_setup.headers["Idempotency-Key"] == SAVE_KEY
    # and the credential is the PaymentMethod with its Customer, the card its display details
    assert saved.ok
    assert (saved.reference, saved.extra) == (PM, {"stripe_customer": STRIPE_CUSTOMER})
    assert saved.card == CardInfo(brand="visa", country="US", funding="credit", last4="4242")
    assert (saved.exp_month, saved.exp_year, saved.fingerprint) == (8, 2030, "Xt5EWLLDS7FJjR1c")
    # Stripe's SetupAttempt reports no network transaction id
    assert saved.network_transaction_id == ""


def test_saving_again_uses_the_customers_stripe_customer_found_by_search():
    found = {**NO_CUSTOMERS, "data": [CUSTOMER, {**CUSTOMER, "id": "cus_Newer", "created": 1726679999}]}
    gateway, client = gateway_with((200, found), (200, setup_intent("succeeded")))

    saved = save(gateway)

    # the oldest of our customer's Stripe Customers, none created
    assert [s.path for s in client.sent] == ["/v1/customers/search", "/v1/setup_intents"]
    assert form(client.sent[1])["customer"] == STRIPE_CUSTOMER
    assert saved.ok and saved.extra == {"stripe_customer": STRIPE_CUSTOMER}


def test_a_card_saved_without_a_customer_gets_a_stripe_customer_of_its_own():
    gateway, client = gateway_with(
        (200, {**CUSTOMER, "id": "cus_Alone", "metadata": {"saved_with": SAVE_KEY}}),
        (200, setup_intent("succeeded", customer="cus_Alone")),
    )

    saved = save(gateway, customer_reference=None)

    create_customer, create_setup = client.sent
    assert form(create_customer) == {"metadata[saved_with]": SAVE_KEY}
    assert create_customer.headers["Idempotency-Key"] == f"{SAVE_KEY}:customer"
    assert form(create_setup)["customer"] == "cus_Alone"
    assert "metadata[customer_reference]" not in form(create_setup)
    assert saved.ok and saved.extra == {"stripe_customer": "cus_Alone"}


def test_a_setup_intent_that_wants_authentication_is_authentication_required():
    wants_3ds = setup_intent(
        "requires_action",
        next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}},
    )
    gateway, _ = gateway_with((200, {**NO_CUSTOMERS, "data": [CUSTOMER]}), (200, wants_3ds))

    saved = save(gateway)

    assert not saved.ok
    assert saved.code == "authentication_required"
    assert "authenticate" in saved.message and "checkout" in saved.message


@pytest.mark.parametrize(
    ("http_status", "error", "says"),
    [
        (402, {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}, "card_declined, insufficient_funds"),
        (402, {"type": "card_error", "code": "expired_card", "message": "Your card has expired."}, "expired_card"),
        (400, {"type": "invalid_request_error", "code": "setup_intent_authentication_failure", "message": "The latest attempt to set up the payment method has failed because authentication failed."}, "setup_intent_authentication_failure"),
    ],
)  # fmt: skip
def test_a_declined_card_is_card_declined_with_stripes_codes(http_status, error, says):
    failed = setup_intent(
        "requires_payment_method",
        last_setup_error={k: v for k, v in error.items() if k != "type"},
        payment_method=None,
    )
    body = {"error": {**error, "setup_intent": failed}}
    gateway, _ = gateway_with((200, {**NO_CUSTOMERS, "data": [CUSTOMER]}), (http_status, body))

    saved = save(gateway)

    assert not saved.ok
    assert saved.code == "card_declined"
    assert says in saved.message


def test_a_setup_intent_answered_as_failed_is_card_declined():
    failed = setup_intent(
        "requires_payment_method",
        last_setup_error={
            "code": "card_declined",
            "decline_code": "do_not_honor",
            "message": "Your card was declined.",
        },
    )
    gateway, _ = gateway_with((200, {**NO_CUSTOMERS, "data": [CUSTOMER]}), (200, failed))

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, "card_declined")
    assert "card_declined, do_not_honor" in saved.message


@pytest.mark.parametrize(
    ("http_status", "body", "code"),
    [
        (400, error_json("invalid_request_error", f"No such PaymentMethod: '{PM}'", code="resource_missing", param="payment_method"), "resource_missing"),
        (404, error_json("invalid_request_error", "Unrecognized request URL"), "resource_missing"),
        (400, error_json("invalid_request_error", "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment", param="payment_method"), "payment_method_invalid"),
        (503, error_json("api_error", "Service unavailable"), "gateway_error"),
        (429, error_json("invalid_request_error", "Too many requests", code="rate_limit"), "gateway_error"),
    ],
)  # fmt: skip
def test_saving_failures_are_answers(http_status, body, code):
    gateway, _ = gateway_with((200, {**NO_CUSTOMERS, "data": [CUSTOMER]}), (http_status, body))

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, code)
    assert saved.message.startswith("save payment method: ")


def test_no_stripe_customer_is_a_gateway_error_and_no_setup_intent_is_sent():
    gateway, client = gateway_with((200, NO_CUSTOMERS), (503, error_json("api_error", "Service unavailable")))

    saved = save(gateway)

    assert (saved.ok, saved.code) == (False, "gateway_error")
    assert [s.path for s in client.sent] == ["/v1/customers/search", "/v1/customers"]


def test_a_save_that_failed_with_a_500_is_sent_again_as_it_was():
    # given Stripe fails the SetupIntent with a 500 (it may or may not have set the card up)
    gateway, client = gateway_with(
        (200, {**NO_CUSTOMERS, "data": [CUSTOMER]}),
        (500, error_json("api_error", "Something went wrong on Stripe's end.")),
        (200, {**NO_CUSTOMERS, "data": [CUSTOMER]}),
        (200, setup_intent("succeeded")),
    )

    # when the save is tried again with the same key
    first = save(gateway)
    second = save(gateway)

    # then the first is a gateway error, and the retry is the same request under the same key,
    # which Stripe answers with the one SetupIntent
    assert (first.ok, first.code) == (False, "gateway_error")
    assert second.ok and second.reference == PM
    first_setup, second_setup = (s for s in client.sent if s.path == "/v1/setup_intents")
    assert first_setup.headers["Idempotency-Key"] == second_setup.headers["Idempotency-Key"] == SAVE_KEY
    assert first_setup.form == second_setup.form


def test_without_a_key_a_save_is_keyed_by_its_token():
    gateway, client = gateway_with(
        (200, {**NO_CUSTOMERS, "data": [CUSTOMER]}),
        (200, setup_intent("succeeded")),
        (200, {**NO_CUSTOMERS, "data": [CUSTOMER]}),
        (200, setup_intent("succeeded")),
    )

    save(gateway, idempotency_key="")
    save(gateway, idempotency_key="")

    keys = [s.headers["Idempotency-Key"] for s in client.sent if s.path == "/v1/setup_intents"]
    assert keys[0] == keys[1] and keys[0].startswith("save_") and PM not in keys[0]


# --------------------------------------------------------------------------- charging: PaymentIntent


def charge(**fields: Any) -> ChargeRequest:
    defaults: dict[str, Any] = {
        "attempt_id": "pay_s_1",
        "amount": 2500,
        "currency": "USD",
        "payment_method": PM,
    }
    return ChargeRequest(**(defaults | fields))


def test_a_charge_that_saves_the_card_returns_its_credential_and_network_transaction_id():
    # given Stripe charges the card and attaches it to our customer's Stripe Customer
    charged = payment_intent(
        customer=STRIPE_CUSTOMER,
        payment_method=copy.deepcopy(PAYMENT_METHOD),
        setup_future_usage="off_session",
    )
    gateway, client = gateway_with((200, {**NO_CUSTOMERS, "data": [CUSTOMER]}), (200, charged))

    # when a customer-initiated charge asks to save the card for off-session use
    result = gateway.authorize(charge(customer_reference="cus_ours", setup_future_usage="off_session"))

    # then the PaymentIntent names the Customer, asks to save, and expands the PaymentMethod
    _, create = client.sent
    assert (create.method, create.path) == ("POST", "/v1/payment_intents")
    assert form(create) == {
        "amount": "2500",
        "currency": "usd",
        "payment_method": PM,
        "payment_method_types[0]": "card",
        "confirm": "true",
        "capture_method": "automatic",
        "metadata[customer_reference]": "cus_ours",
        "metadata[attempt_id]": "pay_s_1",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
        "expand[2]": "payment_method",
        "customer": STRIPE_CUSTOMER,
        "setup_future_usage": "off_session",
    }
    assert create.headers["Idempotency-Key"] == "pay_s_1"
    # and the result is the charge, its network transaction id and the saved credential
    assert (result.outcome, result.status, result.amount_captured, result.fee) == (
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        2500,
        103,
    )
    assert result.network_transaction_id == NTI
    assert result.saved is not None and result.saved.ok
    assert (result.saved.reference, result.saved.extra) == (PM, {"stripe_customer": STRIPE_CUSTOMER})
    assert result.saved.card == CardInfo(brand="visa", country="US", funding="credit", last4="4242")
    assert (result.saved.fingerprint, result.saved.network_transaction_id) == ("Xt5EWLLDS7FJjR1c", NTI)


def test_a_declined_charge_that_would_have_saved_saves_nothing():
    declined = payment_intent(
        "requires_payment_method",
        customer=STRIPE_CUSTOMER,
        payment_method=None,
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    body = error_json(
        "card_error", "Your card has insufficient funds.", code="card_declined", decline_code="insufficient_funds",
        payment_intent=declined,
    )  # fmt: skip
    gateway, _ = gateway_with((200, {**NO_CUSTOMERS, "data": [CUSTOMER]}), (402, body))

    result = gateway.authorize(charge(customer_reference="cus_ours", setup_future_usage="on_session"))

    assert (result.outcome, result.decline_code) == (Outcome.DECLINED_SOFT, "insufficient_funds")
    assert (result.saved, result.network_transaction_id) == (None, "")


def test_saving_while_charging_without_a_stripe_customer_charges_nothing():
    gateway, client = gateway_with((200, NO_CUSTOMERS), (500, error_json("api_error", "boom")))

    result = gateway.authorize(charge(customer_reference="cus_ours", setup_future_usage="off_session"))

    assert (result.outcome, result.status) == (Outcome.GATEWAY_ERROR, GatewayStatus.ERROR)
    assert "/v1/payment_intents" not in [s.path for s in client.sent]


def test_an_off_session_charge_of_a_card_saved_elsewhere_passes_its_network_transaction_id():
    gateway, client = gateway_with((200, payment_intent()))

    result = gateway.authorize(
        charge(off_session=True, network_transaction_id="583402938475610", credential={"reference": PM})
    )

    (create,) = client.sent
    sent = form(create)
    assert sent["off_session"] == "true"
    assert sent["payment_method_options[card][mit_exemption][network_transaction_id]"] == "583402938475610"
    assert "customer" not in sent and "setup_future_usage" not in sent
    assert (result.outcome, result.network_transaction_id) == (Outcome.SUCCEEDED, NTI)
    assert result.saved is None


def test_an_off_session_charge_of_a_card_stripe_saved_names_its_customer_and_no_exemption():
    gateway, client = gateway_with((200, payment_intent(customer=STRIPE_CUSTOMER)))

    gateway.authorize(
        charge(
            off_session=True,
            recurring=True,
            network_transaction_id=NTI,
            credential={"reference": PM, "stripe_customer": STRIPE_CUSTOMER},
        )
    )

    (create,) = client.sent
    sent = form(create)
    assert (sent["off_session"], sent["customer"]) == ("true", STRIPE_CUSTOMER)
    assert not any(key.startswith("payment_method_options") for key in sent)


@pytest.mark.parametrize("decline_code", [None, "authentication_required"])
def test_an_off_session_charge_stripe_wants_authenticated_is_a_soft_authentication_required(decline_code):
    # given Stripe refuses the merchant-initiated charge until the customer authenticates
    # (docs.stripe.com/payments/save-and-reuse: a 402 card_error, code authentication_required,
    # the PaymentIntent back to requires_payment_method)
    error = {
        "code": "authentication_required",
        "message": "Your card was declined. This transaction requires authentication.",
    }
    if decline_code:
        error["decline_code"] = decline_code
    failed = payment_intent(
        "requires_payment_method",
        customer=STRIPE_CUSTOMER,
        last_payment_error={**error, "type": "card_error"},
    )
    body = error_json(
        "card_error",
        error["message"],
        **{k: v for k, v in error.items() if k != "message"},
        payment_intent=failed,
    )
    gateway, _ = gateway_with((402, body))

    # when we charge the saved card off session
    result = gateway.authorize(
        charge(off_session=True, credential={"reference": PM, "stripe_customer": STRIPE_CUSTOMER})
    )

    # then it is a soft decline saying authentication is required
    assert (result.outcome, result.status) == (Outcome.DECLINED_SOFT, GatewayStatus.DECLINED)
    assert result.decline_code == "authentication_required"
    assert result.reference == "pi_3Q0PsKJvEtkwdCNY0d1Xsxxq"
    assert (result.saved, result.network_transaction_id) == (None, "")


def test_a_direct_charge_saving_the_card_finds_the_customer_in_the_connected_account():
    charged = payment_intent(customer=STRIPE_CUSTOMER, payment_method=copy.deepcopy(PAYMENT_METHOD))
    gateway, client = gateway_with((200, NO_CUSTOMERS), (200, CUSTOMER), (200, charged))

    result = gateway.authorize(
        charge(
            customer_reference="cus_ours", setup_future_usage="off_session", connected_account="acct_1Vendor"
        )
    )

    assert [(s.path, s.headers.get("Stripe-Account")) for s in client.sent] == [
        ("/v1/customers/search", "acct_1Vendor"),
        ("/v1/customers", "acct_1Vendor"),
        ("/v1/payment_intents", "acct_1Vendor"),
    ]
    assert result.reference == "acct_1Vendor/pi_3Q0PsKJvEtkwdCNY0d1Xsxxq"
    assert result.saved is not None and result.saved.extra == {"stripe_customer": STRIPE_CUSTOMER}
