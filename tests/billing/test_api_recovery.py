"""A subscription created through the API whose answer was lost: the retry with the same
``Idempotency-Key`` answers the subscription the first request created (issue 11, scenario 1)."""

from __future__ import annotations

from apps.api.v1 import billing as billing_api
from apps.billing import services as billing_services
from apps.billing.models import Invoice, Subscription
from apps.payments.models import PaymentIntent, SimulatorCharge
from tests.api.test_idempotency_recovery import crash_once, key
from tests.billing.test_api import make_customer, make_price


def assert_crashed(response) -> None:
    """The request crashed after its work was committed: the API answers a JSON 500 (never a page
    or a raised exception), and the key stays bound to what was created."""
    assert response.status_code == 500, response.content
    assert response.json()["error"]["code"] == "internal_error"


def test_a_subscription_retried_after_a_crash_is_created_and_charged_once(api, billing, monkeypatch):
    body = {
        "customer": make_customer(api),
        "price": make_price(api)["id"],
        "currency": "usd",
        "payment_method": "pm_card_visa",
    }
    crash_once(monkeypatch, billing_api, "Response")
    assert_crashed(api.post("/api/v1/subscriptions", body, headers=key("k-sub")))

    retry = api.post("/api/v1/subscriptions", body, headers=key("k-sub"))

    (sub,) = Subscription.objects.filter(customer_id=body["customer"])
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert (retry.json()["id"], retry.json()["status"]) == (sub.id, "active")
    (invoice,) = Invoice.objects.filter(subscription=sub)
    assert (invoice.status, invoice.amount_paid) == ("paid", 3000)
    (payment,) = PaymentIntent.objects.filter(customer_id=body["customer"])
    assert payment.id == invoice.payment_id
    assert SimulatorCharge.objects.filter(attempt_id__startswith=f"{payment.id}_").count() == 1


def test_a_subscription_whose_first_request_died_before_charging_is_charged_by_the_retry(
    api, billing, monkeypatch
):
    body = {
        "customer": make_customer(api),
        "price": make_price(api)["id"],
        "currency": "usd",
        "payment_method": "pm_card_visa",
    }
    crash_once(monkeypatch, billing_services, "invoice_collect")  # after the subscription committed
    assert_crashed(api.post("/api/v1/subscriptions", body, headers=key("k-sub-uncharged")))
    (sub,) = Subscription.objects.filter(customer_id=body["customer"])
    (invoice,) = Invoice.objects.filter(subscription=sub)
    assert (invoice.status, invoice.payment_id) == ("open", "")

    retry = api.post("/api/v1/subscriptions", body, headers=key("k-sub-uncharged"))

    assert retry.status_code == 201 and retry.json()["id"] == sub.id
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", 3000)
    assert Subscription.objects.filter(customer_id=body["customer"]).count() == 1
    assert SimulatorCharge.objects.filter(attempt_id__startswith=f"{invoice.payment_id}_").count() == 1
