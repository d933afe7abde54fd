"""The hosted checkout page, its session endpoint (which card fields it mounts, configured from
the marketplace's first routable gateway account), the element's script, and the simulator's
card fields (the one path a card number may be posted to, in the demo only)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from django.test import Client, override_settings

from apps.core.pan import luhn_valid
from apps.payments.gateways.simulator.card_fields import tokenize
from apps.payments.methods import TEST_CARD_NUMBERS, TEST_METHODS
from apps.payments.models import GatewayAccount, PaymentIntent, RoutingRule
from tests.checkout.test_sessions_api import HOST, confirm, create
from tests.payments.test_stripe_gateway import SECRET, card_payment_method


def page(session_id: str, **kwargs):
    return Client(HTTP_HOST=HOST).get(f"/checkout/{session_id}", **kwargs)


def session_info(session) -> dict:
    response = Client(HTTP_HOST=HOST).post(
        f"/checkout/{session['id']}/session",
        json.dumps({"client_secret": session["client_secret"]}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_the_page_shows_what_is_paid_in_the_marketplace_brand(api, tenant_a):
    tenant_a.brand_color, tenant_a.logo_url = "#0f766e", "https://cdn.example/alpha.png"
    tenant_a.save(update_fields=["brand_color", "logo_url"])
    session = create(
        api,
        amount=None,
        line_items=[
            {"name": "Stoneware mug", "amount": 1800, "quantity": 2},
            {"name": "Gift wrap", "amount": 350},
        ],
        cancel_url="https://shop.example/cart",
    )

    response = page(session["id"])

    html = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert "<title>Pay 39.50 USD · Alpha Market</title>" in html
    assert "Stoneware mug" in html and "2 \u00d7 18.00 USD" in html and "36.00 USD" in html
    assert "--brand: #0f766e" in html and 'src="https://cdn.example/alpha.png"' in html
    assert 'href="https://shop.example/cart"' in html
    assert 'data-fields-kind="simulator"' in html and '<script src="/checkout.js"></script>' in html
    assert session["client_secret"] in html  # the page's element authenticates with it


def test_an_unknown_session_is_a_404_and_a_paid_one_says_so(api):
    assert page("cs_nope").status_code == 404
    session = create(api, success_url="https://shop.example/thanks")
    confirm(session, "pm_card_visa")

    response = page(session["id"])

    assert response.status_code == 200 and b"Payment received" in response.content
    assert f"https://shop.example/thanks?session_id={session['id']}".encode() in response.content
    assert session["client_secret"].encode() not in response.content


def test_the_session_endpoint_mounts_the_simulators_fields(api):
    info = session_info(create(api))

    assert info["fields"] == {"kind": "simulator", "url": f"http://{HOST}/simulator/card-fields"}
    assert (info["amount"], info["currency"], info["total"]) == (2000, "usd", "20.00 USD")
    assert info["marketplace"]["name"] == "Alpha Market"


def _first_gateway(kind: str, settings: dict, credentials: dict) -> None:
    account = GatewayAccount(name=f"{kind}_main", kind=kind, settings=settings)
    account.credentials = credentials
    account.save()
    RoutingRule.objects.create(name=kind, priority=1, candidates=[{"gateway": account.name}])


def test_a_stripe_marketplace_mounts_the_payment_element_with_its_publishable_key(api):
    _first_gateway("stripe", {"publishable_key": "pk_test_51Abc"}, {"secret_key": "sk_test_secret"})
    session = create(api)

    info = session_info(session)

    assert info["fields"] == {"kind": "stripe", "publishable_key": "pk_test_51Abc"}
    html = page(session["id"]).content.decode()
    assert 'data-fields-kind="stripe"' in html and "sk_test_secret" not in html


def test_an_adyen_marketplace_mounts_its_card_component_with_its_client_key(api):
    _first_gateway(
        "adyen",
        {"client_key": "test_ABCDEF", "environment": "test"},
        {"api_key": "AQE_secret", "merchant_account": "ClayKiln"},
    )

    info = session_info(create(api))

    assert info["fields"] == {"kind": "adyen", "client_key": "test_ABCDEF", "environment": "test"}
    assert "AQE_secret" not in json.dumps(info)


def test_the_element_script_is_served_as_javascript(in_tenant_a):
    response = Client(HTTP_HOST=HOST).get("/checkout.js")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert b"Marketplace.checkout = checkout" in response.content


# --------------------------------------------------------------------------- the simulator's fields


def test_every_documented_test_number_is_a_card_the_simulator_knows():
    for number, token in TEST_CARD_NUMBERS.items():
        assert luhn_valid(number), number
        assert TEST_METHODS[token].card.last4 == number[-4:], number
    assert TEST_CARD_NUMBERS["4242424242424242"] == "pm_card_visa"
    assert TEST_CARD_NUMBERS["4000000000000002"] == "pm_card_chargeDeclined"
    assert TEST_CARD_NUMBERS["4000002760003184"] == "pm_card_authenticationRequired"


@pytest.mark.parametrize(
    ("number", "expiry", "cvc", "param"),
    [
        ("4111 1111 1111 1111", "12/34", "123", "number"),  # a real-looking card, not a test one
        ("", "12/34", "123", "number"),
        ("4242 4242 4242 4242", "13/34", "123", "expiry"),
        ("4242 4242 4242 4242", "01/20", "123", "expiry"),
        ("4242 4242 4242 4242", "12/34", "12", "cvc"),
    ],
)
def test_the_fields_refuse_anything_but_test_cards_with_a_future_expiry(number, expiry, cvc, param):
    answer, status = tokenize(number, expiry, cvc, today=date(2026, 12, 3))

    assert status == 400 and answer["error"]["param"] == param


def test_the_fields_page_is_framed_only_by_its_parent_and_never_cached(in_tenant_a):
    client = Client(HTTP_HOST=HOST)

    response = client.get("/simulator/card-fields", {"origin": "http://shop.localhost:8080"})

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == "frame-ancestors http://shop.localhost:8080"
    assert "X-Frame-Options" not in response
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert '<label for="number">Card number</label>' in html and '<label for="cvc">' in html
    assert '"http://shop.localhost:8080"' in html  # the only origin its postMessage goes to


def test_the_fields_turn_a_test_number_into_its_token_without_keeping_it(in_tenant_a, caplog):
    client = Client(HTTP_HOST=HOST)
    body = {"number": "4242 4242 4242 4242", "expiry": "12 / 34", "cvc": "123"}

    answer = client.post("/simulator/card-fields", json.dumps(body), content_type="application/json")
    refused = client.post(
        "/simulator/card-fields",
        json.dumps({**body, "number": "4111 1111 1111 1111"}),
        content_type="application/json",
    )

    assert answer.status_code == 200 and answer.json() == {
        "token": "pm_card_visa",
        "card": {"brand": "visa", "last4": "4242"},
    }
    assert "no-store" in answer["Cache-Control"]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "number"
    assert "4242 4242" not in caplog.text and "4111 1111" not in caplog.text


def test_the_form_middleware_exempts_only_the_fields_path(in_tenant_a):
    client = Client(HTTP_HOST=HOST)
    form = {"number": "4242424242424242", "expiry": "12/34", "cvc": "123"}

    exempt = client.post("/simulator/card-fields", form)  # form-encoded: the view reads JSON only
    elsewhere = client.post("/admin/login/", form)  # any other form page

    assert exempt.status_code == 400 and exempt.json()["error"]["param"] == "number"
    assert elsewhere.status_code == 400 and b"card number" in elsewhere.content.lower()
    assert b"error" not in elsewhere.content[:1]


@override_settings(SIMULATOR_CARD_FIELDS=False)
def test_without_the_setting_there_are_no_fields_and_no_exemption(in_tenant_a):
    client = Client(HTTP_HOST=HOST)

    assert client.get("/simulator/card-fields").status_code == 404
    refused = client.post("/simulator/card-fields", {"number": "4242424242424242"})
    assert refused.status_code == 400 and b"card number" in refused.content.lower()


@pytest.mark.localstripe
def test_a_stripe_token_goes_through_the_same_confirm_endpoint(api, localstripe):
    # given a marketplace charging at Stripe (localstripe), and the PaymentMethod Stripe's
    # Payment Element makes of the card the shopper typed into it (the card goes to Stripe only)
    _first_gateway(
        "stripe", {"api_base": localstripe, "publishable_key": "pk_test_51Abc"}, {"secret_key": SECRET}
    )
    token = card_payment_method(localstripe, "4242424242424242")
    session = create(api)

    # when the element posts that token to the confirm endpoint
    answer = confirm(session, token)

    # then the session's payment succeeded at the Stripe account with that token
    payment = PaymentIntent.objects.get()
    assert answer["status"] == "complete", (
        payment.last_error,
        [(a.status, a.message) for a in payment.attempts.all()],
    )
    assert (payment.payment_method, payment.status) == (token, "succeeded")
    assert payment.attempts.get().gateway_account.kind == "stripe"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://cdn.example/logo.png", "not a url"])
def test_a_logo_url_must_be_http_or_https(url):
    from django.core.exceptions import ValidationError

    from apps.tenants.models import Marketplace

    field = Marketplace._meta.get_field("logo_url")
    with pytest.raises(ValidationError):
        field.clean(url, None)
    assert field.clean("https://cdn.example/logo.png", None) == "https://cdn.example/logo.png"
