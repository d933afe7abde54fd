"""Renewals and dunning retries with a payment method of ours: they only go to gateways that
hold a credential for it."""

from __future__ import annotations

from apps.billing.models import Invoice, InvoiceAttempt, Subscription
from apps.billing.services import subscription_create
from apps.customers.services import customer_create
from apps.payments.models import PaymentAttempt, PaymentIntent, SimulatorCharge
from apps.payments.services.methods import payment_method_create
from tests.billing.conftest import configure, monthly_price, subscribe
from tests.billing.test_dunning import run_daily


def test_a_card_saved_only_at_a_gateway_that_is_down_waits_for_it_then_is_charged_there(billing, clock):
    # given a card saved only at primary, and primary down on day 0
    jenny = customer_create(email="jenny@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    configure("primary", down=True)
    sub = subscription_create(
        customer_id=jenny.pk, price_id=monthly_price().id, currency="usd", payment_method=method.pk
    )
    inv = Invoice.objects.get(subscription=sub)
    first = inv.attempts.get()
    # then the first charge never went to secondary, which cannot charge the card
    assert sub.status == "past_due" and first.status == "failed"
    intent = PaymentIntent.objects.get(pk=first.payment_id)
    assert intent.last_error["code"] == "payment_method_unreachable"
    assert list(
        PaymentAttempt.objects.filter(intent=intent).values_list("gateway_account__name", flat=True)
    ) == ["primary"]
    # when primary is back, the next retry charges the card there, once
    configure("primary")
    run_daily(clock, 1)
    inv.refresh_from_db()
    assert inv.status == "paid"
    paid = PaymentIntent.objects.get(pk=inv.payment_id)
    assert paid.gateway_account.name == "primary" and paid.payment_method == method.pk
    charged = SimulatorCharge.objects.filter(attempt_id__startswith=paid.pk + "_")
    assert [c.account for c in charged] == ["primary"]
    assert charged[0].payment_method.startswith("simtok_primary_")


def test_a_subscription_cannot_use_another_customers_saved_method(api, billing):
    # given jenny's saved method and bob
    jenny = customer_create(email="jenny@example.com")
    bob = customer_create(email="bob@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    price = monthly_price()
    body = {"customer": bob.pk, "price": price.id, "currency": "usd", "payment_method": method.pk}

    # when bob subscribes with it, or changes his subscription's card to it
    refused = api.post("/api/v1/subscriptions", body)
    own = api.post("/api/v1/subscriptions", {**body, "payment_method": "pm_card_visa"}).json()
    changed = api.post(f"/api/v1/subscriptions/{own['id']}", {"payment_method": method.pk})

    # then both are refused up front, as payments refuses it, and nothing was subscribed
    for response in (refused, changed):
        assert response.status_code == 400, response.json()
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("payment_method_customer_mismatch", "payment_method")
    assert list(Subscription.objects.filter(customer=bob).values_list("id", "payment_method")) == [
        (own["id"], "pm_card_visa")
    ]
    # jenny subscribes with her own method
    mine = api.post("/api/v1/subscriptions", {**body, "customer": jenny.pk})
    assert (mine.status_code, mine.json()["status"]) == (201, "active")


def test_an_invoice_whose_retries_stopped_has_no_next_payment_attempt(api, billing):
    # given a first charge refused with "do not try again", and one that failed with no payment
    price = monthly_price()
    stopped = subscribe(price, card="pm_card_visa_chargeDeclinedLostCard")
    inv = Invoice.objects.get(subscription=stopped)
    assert inv.retries_stopped and inv.next_attempt_at is not None  # the final action's date
    attempt = inv.attempts.get()
    InvoiceAttempt.objects.filter(pk=attempt.pk).update(payment_id="")

    # when the API shows the invoice
    body = api.get(f"/api/v1/invoices/{inv.id}").json()

    # then no retry is announced, and the attempt without a payment shows null
    assert body["retries_stopped"].startswith("lost_card")
    assert body["next_payment_attempt"] is None
    assert body["attempts"][0]["payment"] is None
