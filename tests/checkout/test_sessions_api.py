"""Checkout sessions through the API and the page's JSON endpoints (Django's test client, real
PostgreSQL, the simulator as the processor): create, retrieve, list, validation, the confirm
endpoint (pay, decline then another card, setup mode, saving the card), expiry and the events."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.api.v1.checkout import session_url
from apps.checkout.models import CheckoutSession
from apps.checkout.services import DECLINED, checkout_sessions_sweep
from apps.payments.models import PaymentIntent
from apps.webhooks.models import OutboundEvent

HOST = "alpha.localhost"


def create(api, status=201, **body):
    payload = {"amount": 2000, "currency": "usd", **body}
    response = api.post("/api/v1/checkout_sessions", {k: v for k, v in payload.items() if v is not None})
    assert response.status_code == status, response.json()
    return response.json()


def confirm(session, token, *, secret=None, status=200, client=None, **extra):
    client = client or Client(HTTP_HOST=HOST)
    body = {"client_secret": session["client_secret"] if secret is None else secret, "token": token, **extra}
    response = client.post(
        f"/checkout/{session['id']}/confirm", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == status, response.content
    return response.json()


def customer(api) -> str:
    return api.post("/api/v1/customers", {"email": "jenny@example.com"}).json()["id"]


# --------------------------------------------------------------------------- create, retrieve


def test_create_answers_the_hosted_url_and_the_client_secret_once(api):
    body = create(api, success_url="https://shop.example/thanks", cancel_url="https://shop.example/cart")

    assert body["id"].startswith("cs_") and body["object"] == "checkout_session"
    assert body["url"] == f"http://{HOST}/checkout/{body['id']}"
    assert body["client_secret"].startswith(body["id"] + "_secret_")
    assert (body["status"], body["mode"], body["amount"], body["currency"]) == (
        "open",
        "payment",
        2000,
        "usd",
    )
    assert body["payment"] is None and body["expires_at"] - body["created"] == 86400
    fetched = api.get(f"/api/v1/checkout_sessions/{body['id']}")
    assert fetched.status_code == 200
    assert "client_secret" not in fetched.json()
    assert fetched.json() == {k: v for k, v in body.items() if k != "client_secret"}


def test_line_items_are_summed_in_minor_units(api):
    body = create(
        api,
        amount=None,
        line_items=[
            {"name": "Stoneware mug", "amount": 1800, "quantity": 2},
            {"name": "Gift wrap", "amount": 350},
        ],
    )

    assert body["amount"] == 3950
    assert body["line_items"] == [
        {"name": "Stoneware mug", "amount": 1800, "quantity": 2},
        {"name": "Gift wrap", "amount": 350, "quantity": 1},
    ]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"colour": "red"}, "colour", "parameter_unknown"),
        ({"amount": "2000"}, "amount", "parameter_invalid"),
        ({"amount": 0}, "amount", None),
        ({"currency": "xyz"}, "currency", None),
        ({"line_items": [{"name": "mug", "amount": 100}]}, "amount", "parameter_invalid"),
        (
            {"line_items": [{"name": "mug", "amount": 100, "sku": "x"}], "amount": None},
            "line_items[0].sku",
            "parameter_unknown",
        ),
        ({"success_url": "ftp://shop.example/x"}, "success_url", "parameter_invalid"),
        ({"save_payment_method": True}, "save_payment_method", "parameter_invalid"),
        ({"customer": "cus_nope"}, "customer", "resource_missing"),
        ({"mode": "setup", "amount": None}, "customer", "parameter_invalid"),
        ({"mode": "subscription"}, "mode", None),
        ({"expires_in": 5}, "expires_in", "parameter_invalid"),
        ({"splits": [{"vendor": "ven_nope", "amount": 2000}]}, None, None),
    ],
)
def test_bad_input_is_a_400_naming_the_param(api, body, param, code):
    payload = {"amount": 2000, "currency": "usd", **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    response = api.post("/api/v1/checkout_sessions", payload)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    if param:
        assert error["param"] == param
    if code:
        assert error["code"] == code
    assert not CheckoutSession.objects.exists()


def test_an_idempotency_key_creates_one_session(api):
    first = api.post(
        "/api/v1/checkout_sessions", {"amount": 500, "currency": "eur"}, headers={"Idempotency-Key": "cs-1"}
    )
    again = api.post(
        "/api/v1/checkout_sessions", {"amount": 500, "currency": "eur"}, headers={"Idempotency-Key": "cs-1"}
    )

    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert CheckoutSession.objects.count() == 1


def test_list_filters_by_status(api):
    open_ = create(api)
    done = create(api)
    confirm(done, "pm_card_visa")

    listed = api.get("/api/v1/checkout_sessions", {"status": "complete"}).json()
    assert [s["id"] for s in listed["data"]] == [done["id"]]
    assert api.get("/api/v1/checkout_sessions", {"status": "nope"}).status_code == 400
    assert {s["id"] for s in api.get("/api/v1/checkout_sessions").json()["data"]} == {open_["id"], done["id"]}


# --------------------------------------------------------------------------- confirm


def test_paying_with_4242_completes_the_session_and_publishes_the_event(api):
    session = create(api, success_url="https://shop.example/thanks?order=7")

    answer = confirm(session, "pm_card_visa")

    assert answer["status"] == "complete"
    assert answer["redirect"] == f"https://shop.example/thanks?order=7&session_id={session['id']}"
    body = api.get(f"/api/v1/checkout_sessions/{session['id']}").json()
    assert body["status"] == "complete" and body["payment"] == answer["payment"]
    payment = api.get(f"/api/v1/payments/{body['payment']}").json()
    assert (payment["status"], payment["amount"], payment["metadata"]) == (
        "succeeded",
        2000,
        {"checkout_session": session["id"]},
    )
    [event] = OutboundEvent.objects.filter(type="checkout_session.completed")
    assert event.object_id == session["id"] and event.data["status"] == "complete"
    assert event.data["payment"] == body["payment"]
    # a second confirm changes nothing: the session is paid
    assert confirm(session, "pm_card_mastercard")["status"] == "complete"
    assert PaymentIntent.objects.count() == 1


def test_a_decline_says_try_another_card_then_another_card_pays_the_same_payment(api):
    session = create(api)

    declined = confirm(session, "pm_card_chargeDeclinedInsufficientFunds")

    # in plain words, as Stripe's pages say it (payments' customer_message), never a code
    assert declined["status"] == "failed"
    assert declined["message"] == "Your card has insufficient funds. Try another card."
    assert "insufficient_funds" not in json.dumps(declined) and "decline" not in json.dumps(declined)
    paid = confirm(session, "pm_card_visa")
    assert paid["status"] == "complete" and paid["payment"] == declined["payment"]
    assert PaymentIntent.objects.get().status == "succeeded"


def test_an_unknown_token_is_a_decline_not_a_crash(api):
    session = create(api)

    answer = confirm(session, "pm_card_nope")

    assert (answer["status"], answer["message"]) == ("failed", DECLINED)


def test_the_confirm_endpoint_is_authenticated_by_the_client_secret(api):
    session = create(api)
    other = create(api)

    confirm(session, "pm_card_visa", secret=other["client_secret"], status=404)
    confirm(session, "pm_card_visa", secret="", status=404)
    assert not PaymentIntent.objects.exists()


def test_the_confirm_endpoint_refuses_card_numbers_and_unknown_params(api):
    session = create(api)

    refused = confirm(session, "4242 4242 4242 4242", status=400)
    assert (refused["error"]["code"], refused["error"]["param"]) == ("card_number_not_allowed", "token")
    form = Client(HTTP_HOST=HOST).post(
        f"/checkout/{session['id']}/confirm",
        f"client_secret={session['client_secret']}&token=4000002760003184",
        content_type="application/x-www-form-urlencoded",
    )
    assert (form.status_code, form.json()["error"]["code"]) == (400, "card_number_not_allowed")
    assert confirm(session, "pm_card_visa", status=400, card="x")["error"]["code"] == "parameter_unknown"
    assert not PaymentIntent.objects.exists()


def test_a_body_nested_too_deep_is_invalid_json_not_a_crash(api):
    session = create(api)

    deep = Client(HTTP_HOST=HOST).post(
        f"/checkout/{session['id']}/confirm", "[" * 15_000, content_type="application/json"
    )

    assert (deep.status_code, deep.json()["error"]["code"]) == (400, "invalid_json")
    assert not PaymentIntent.objects.exists()


def test_a_path_that_cannot_be_an_id_is_a_404_never_a_crash(api):
    client = Client(HTTP_HOST=HOST)

    # a NUL byte (or anything but letters, digits, underscores) names no object, and no query runs
    for method, path in (
        ("get", "/checkout/%00xx"),
        ("post", "/checkout/%00xx/confirm"),
        ("get", "/simulator/primary/authenticate/%00"),
        ("get", "/pay/%00/authenticate"),
    ):
        assert getattr(client, method)(path).status_code == 404, path


def test_a_card_number_escaped_in_json_or_in_a_form_body_is_refused(api):
    session = create(api)
    client = Client(HTTP_HOST=HOST)
    url = f"/checkout/{session['id']}/confirm"

    escaped = client.post(
        url,
        '{"client_secret": "' + session["client_secret"] + '", "token": "\\u0034242424242424242"}',
        content_type="application/json",
    )
    spaced = client.post(
        url,
        json.dumps(
            {"client_secret": session["client_secret"], "token": "4242\u00a04242\u00a04242\u00a04242"}
        ),
        content_type="application/json",
    )
    form = client.post(
        url,
        f"client_secret={session['client_secret']}&token=4242+4242+4242+4242",
        content_type="application/x-www-form-urlencoded",
    )

    for refused in (escaped, spaced):
        assert refused.status_code == 400, refused.content
        assert (refused.json()["error"]["code"], refused.json()["error"]["param"]) == (
            "card_number_not_allowed",
            "token",
        )
    assert (form.status_code, form.json()["error"]["code"]) == (400, "card_number_not_allowed")
    assert not PaymentIntent.objects.exists()


def test_cors_preflight_and_no_cookies_needed(api):
    session = create(api)
    client = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)

    preflight = client.options(f"/checkout/{session['id']}/confirm", HTTP_ORIGIN="https://shop.example")
    assert preflight.status_code == 204 and preflight["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in preflight
    answer = confirm(session, "pm_card_visa", client=client)
    assert answer["status"] == "complete"


def test_save_payment_method_saves_the_card_for_the_customer(api):
    cus = customer(api)
    session = create(api, customer=cus, save_payment_method=True)

    answer = confirm(session, "pm_card_visa")

    payment = api.get(f"/api/v1/payments/{answer['payment']}").json()
    assert payment["setup_future_usage"] == "off_session" and payment["customer"] == cus
    method = api.get(f"/api/v1/payment_methods/{payment['saved_payment_method']}").json()
    assert method["customer"] == cus and method["card"]["last4"] == "4242"


def test_setup_mode_saves_a_method_and_charges_nothing(api):
    cus = customer(api)
    session = create(api, mode="setup", amount=None, currency=None, customer=cus)
    assert session["amount"] is None and session["currency"] is None

    answer = confirm(session, "pm_card_mastercard")

    assert answer["status"] == "complete" and answer["payment"] is None
    method = api.get(f"/api/v1/payment_methods/{answer['payment_method']}").json()
    assert method["customer"] == cus and method["card"]["brand"] == "mastercard"
    assert api.get(f"/api/v1/checkout_sessions/{session['id']}").json()["payment_method"] == method["id"]
    assert not PaymentIntent.objects.exists()


def test_setup_mode_a_token_the_processor_refuses(api):
    session = create(api, mode="setup", amount=None, currency=None, customer=customer(api))

    answer = confirm(session, "pm_card_nope")

    assert (answer["status"], answer["message"]) == ("failed", DECLINED)
    assert CheckoutSession.objects.get().status == "open"


# --------------------------------------------------------------------------- expiry


def _past_due(session_id: str) -> None:
    CheckoutSession.objects.filter(pk=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_the_sweep_expires_open_sessions_past_their_time(api):
    session = create(api)
    later = create(api)
    _past_due(session["id"])

    assert checkout_sessions_sweep() == {"completed": 0, "expired": 1}

    body = api.get(f"/api/v1/checkout_sessions/{session['id']}").json()
    assert body["status"] == "expired"
    assert api.get(f"/api/v1/checkout_sessions/{later['id']}").json()["status"] == "open"
    [event] = OutboundEvent.objects.filter(type="checkout_session.expired")
    assert event.object_id == session["id"]
    answer = confirm(session, "pm_card_visa")
    assert answer["status"] == "expired" and not PaymentIntent.objects.exists()
    page = Client(HTTP_HOST=HOST).get(f"/checkout/{session['id']}")
    assert page.status_code == 410 and b"This checkout has expired" in page.content


def test_a_session_expires_when_confirmed_past_its_time_without_the_sweep(api):
    session = create(api)
    _past_due(session["id"])

    assert confirm(session, "pm_card_visa")["status"] == "expired"
    assert CheckoutSession.objects.get().status == "expired"


def test_expiry_cancels_a_payment_waiting_for_authentication(api):
    session = create(api)
    answer = confirm(session, "pm_card_authenticationRequired")
    payment = PaymentIntent.objects.get()
    assert payment.status == "requires_action", answer
    _past_due(session["id"])

    checkout_sessions_sweep()

    payment.refresh_from_db()
    assert payment.status == "canceled"
    assert CheckoutSession.objects.get().status == "expired"


def test_expires_in_sets_the_time(api):
    body = create(api, expires_in=600)

    assert body["expires_at"] - body["created"] == 600


def test_schema_documents_the_endpoints(api):
    schema = Client(HTTP_HOST=HOST).get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    text = schema.content.decode()

    assert "checkout_sessions_create" in text and "checkout_sessions_retrieve" in text


def test_created_on_the_public_host_the_url_is_the_marketplaces_own(api):
    public = Client(HTTP_HOST="localhost")
    response = public.post(
        "/api/v1/checkout_sessions",
        json.dumps({"amount": 100, "currency": "usd"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api.raw_key}",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["url"] == f"http://{HOST}/checkout/{response.json()['id']}"
    assert session_url(None, "cs_x") == f"https://{HOST}/checkout/cs_x"


def test_a_return_that_is_not_the_sessions_payment_is_a_404(api):
    session = create(api)
    confirm(session, "pm_card_chargeDeclined")

    response = Client(HTTP_HOST=HOST).get(f"/checkout/{session['id']}/return", {"payment": "pay_other"})

    assert response.status_code == 404


def test_3ds_redirects_to_the_challenge_with_the_checkout_return_url(api):
    session = create(api)

    answer = confirm(session, "pm_card_authenticationRequired")

    assert answer["status"] == "requires_action"
    action = answer["next_action"]
    assert action["type"] == "redirect_to_url" and answer["redirect"] == action["redirect_to_url"]["url"]
    assert action["redirect_to_url"]["return_url"] == f"http://{HOST}/checkout/{session['id']}/return"
    # coming back without completing it: the page again, the payment still waiting
    back = Client(HTTP_HOST=HOST).get(f"/checkout/{session['id']}/return", {"payment": answer["payment"]})
    assert back.status_code in (200, 302)
    assert CheckoutSession.objects.get().status == "open"


def test_a_session_the_payments_refuse_now_says_so_without_detail(api, tenant_a):
    session = create(api, amount=5000)
    tenant_a.max_payment_amount = 1000
    tenant_a.save(update_fields=["max_payment_amount"])
    try:
        answer = confirm(session, "pm_card_visa", status=409)
    finally:
        tenant_a.max_payment_amount = 99_999_999
        tenant_a.save(update_fields=["max_payment_amount"])

    assert answer["error"]["message"] == "This checkout cannot be paid right now."
    assert answer["error"]["code"] == "amount_too_large"
    assert not PaymentIntent.objects.exists() and CheckoutSession.objects.get().status == "open"
