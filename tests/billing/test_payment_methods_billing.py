"""Renewals and dunning retries with a payment method of ours: they only go to gateways that
hold a credential for it."""

from __future__ import annotations

from apps.billing.models import Invoice
from apps.billing.services import subscription_create
from apps.customers.services import customer_create
from apps.payments.models import PaymentAttempt, PaymentIntent, SimulatorCharge
from apps.payments.services.methods import payment_method_create
from tests.billing.conftest import configure, monthly_price
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
