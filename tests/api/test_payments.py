from __future__ import annotations

import time

from apps.payments.models import PaymentIntent
from tests.api.conftest import pay


def test_create_and_confirm_in_one_call_succeeds(api):
    body = pay(api, currency="UsD", description="order 7", metadata={"order": "7"})

    assert body["id"].startswith("pay_") and body["object"] == "payment"
    assert (body["amount"], body["currency"], body["status"]) == (2000, "usd", "succeeded")
    assert (body["amount_received"], body["amount_refunded"], body["capture_method"]) == (
        2000,
        0,
        "automatic",
    )
    assert body["description"] == "order 7" and body["metadata"] == {"order": "7"}
    assert body["attempts"] == [f"{body['id']}_1"]
    assert body["last_error"] is None and body["next_action"] is None
    assert abs(body["created"] - time.time()) < 600


def test_create_without_confirm_then_confirm(api):
    created = pay(api, confirm=False)
    assert created["status"] == "requires_confirmation" and created["attempts"] == []

    confirmed = api.post(f"/api/v1/payments/{created['id']}/confirm")

    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "succeeded"


def test_manual_capture_partial_then_cancel_rules(api):
    held = pay(api, capture_method="manual")
    assert held["status"] == "requires_capture" and held["amount_capturable"] == 2000

    captured = api.post(f"/api/v1/payments/{held['id']}/capture", {"amount": 1500})

    assert captured.status_code == 200
    assert (captured.json()["status"], captured.json()["amount_received"]) == ("succeeded", 1500)
    again = api.post(f"/api/v1/payments/{held['id']}/capture")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "payment_intent_unexpected_state"
    cancel = api.post(f"/api/v1/payments/{held['id']}/cancel")
    assert cancel.status_code == 409


def test_cancel_an_authorisation(api):
    held = pay(api, capture_method="manual")

    canceled = api.post(f"/api/v1/payments/{held['id']}/cancel", {"cancellation_reason": "abandoned"})

    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert canceled.json()["amount_capturable"] == 0


def test_capture_more_than_authorised_names_amount(api):
    held = pay(api, capture_method="manual")

    response = api.post(f"/api/v1/payments/{held['id']}/capture", {"amount": 2001})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"


def test_declined_card_is_created_as_failed_with_last_error(api):
    body = pay(api, payment_method="pm_card_chargeDeclined")

    assert body["status"] == "failed"
    assert body["last_error"]["code"] == "card_declined" or body["last_error"]


def test_authentication_required_asks_for_action(api):
    body = pay(api, payment_method="pm_card_authenticationRequired")

    assert body["status"] == "requires_action"
    assert body["next_action"]


def test_retrieve_with_and_without_expanded_attempts(api):
    created = pay(api)

    plain = api.get(f"/api/v1/payments/{created['id']}")
    expanded = api.get(f"/api/v1/payments/{created['id']}", {"expand[]": "attempts"})

    assert plain.status_code == 200 and plain.json() == created
    attempt = expanded.json()["attempts"][0]
    assert attempt["id"] == f"{created['id']}_1" and attempt["object"] == "payment_attempt"
    assert (attempt["status"], attempt["gateway"], attempt["amount_captured"]) == (
        "captured",
        "primary",
        2000,
    )
    assert (
        api.get(f"/api/v1/payments/{created['id']}", {"expand[]": "nope"}).json()["error"]["param"]
        == "expand"
    )


def test_list_filters_by_status_customer_and_created(api):
    customer = api.post("/api/v1/customers", {"email": "f@example.com"}).json()["id"]
    mine = pay(api, customer=customer)
    held = pay(api, customer=customer, capture_method="manual")
    pay(api)

    by_customer = api.get("/api/v1/payments", {"customer": customer}).json()
    by_status = api.get("/api/v1/payments", {"customer": customer, "status": "requires_capture"}).json()
    future = api.get("/api/v1/payments", {"created[gte]": int(time.time()) + 3600}).json()
    past = api.get("/api/v1/payments", {"customer": customer, "created[lte]": int(time.time()) + 60}).json()

    assert [p["id"] for p in by_customer["data"]] == [held["id"], mine["id"]]
    assert by_customer["object"] == "list" and by_customer["has_more"] is False
    assert [p["id"] for p in by_status["data"]] == [held["id"]]
    assert future["data"] == []
    assert len(past["data"]) == 2


def test_list_rejects_bad_filters(api):
    assert api.get("/api/v1/payments", {"status": "paid"}).json()["error"]["param"] == "status"
    assert (
        api.get("/api/v1/payments", {"created[gte]": "yesterday"}).json()["error"]["param"] == "created[gte]"
    )


def test_unknown_payment_is_404_everywhere(api):
    for method, path in [
        ("get", "/api/v1/payments/pay_nope"),
        ("post", "/api/v1/payments/pay_nope/confirm"),
        ("post", "/api/v1/payments/pay_nope/capture"),
        ("post", "/api/v1/payments/pay_nope/cancel"),
        ("post", "/api/v1/payments/pay_nope/refunds"),
    ]:
        response = getattr(api, method)(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "resource_missing"


def test_customer_must_exist(api):
    response = api.post(
        "/api/v1/payments",
        {"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "customer": "cus_nope"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "customer"
    assert PaymentIntent.objects.filter(amount=100, customer_id="cus_nope").count() == 0
