"""Renewals and dunning as merchant-initiated charges of a card the customer saved on a first,
customer-initiated payment: off-session, flagged recurring, carrying the network transaction id
of that first charge to whichever gateway (directly or through a vault) recovers the renewal; a
card that needs the customer to authenticate waits in ``requires_action`` and is retried."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from apps.billing.models import Invoice
from apps.billing.services import subscription_create, subscription_payment_method_update
from apps.customers.services import customer_create
from apps.payments.gateways.simulator.gateway import network_transaction_id_for
from apps.payments.models import (
    PaymentAttempt,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodCredential,
    SimulatorCharge,
)
from apps.payments.services import payment_intent_create
from apps.payments.services.methods import payment_method_create
from tests.billing.conftest import T0, configure, monthly_price, run
from tests.billing.test_dunning import run_daily


def saved_by_a_first_payment(email: str = "jenny@example.com") -> tuple[PaymentMethod, str]:
    """A customer's card saved at primary by a customer-initiated payment (setup_future_usage),
    and the network transaction id of that charge."""
    jenny = customer_create(email=email)
    first = payment_intent_create(
        amount=500,
        currency="usd",
        payment_method="pm_card_visa",
        customer_id=jenny.pk,
        setup_future_usage="off_session",
        confirm=True,
    )
    charged = SimulatorCharge.objects.get(attempt_id=f"{first.id}_1", account="primary")
    method = PaymentMethod.objects.get(pk=first.saved_payment_method)
    return method, network_transaction_id_for(charged.reference)


def renewal(sub) -> tuple[Invoice, PaymentIntent]:
    inv = Invoice.objects.get(subscription=sub, billing_reason=Invoice.Reason.SUBSCRIPTION_CYCLE)
    return inv, PaymentIntent.objects.get(pk=inv.payment_id)


def attempts_of(intent: PaymentIntent) -> list[tuple[str, str, str]]:
    return list(
        PaymentAttempt.objects.filter(intent=intent)
        .order_by("number")
        .values_list("gateway_account__name", "status", "decline_code")
    )


def credentials(method: PaymentMethod) -> set[str]:
    return set(
        PaymentMethodCredential.objects.filter(method=method).values_list("gateway_account__name", flat=True)
    )


def test_a_renewal_declined_at_one_gateway_is_recovered_at_another_with_the_network_id(billing, clock):
    # given a card saved by a first payment at primary, and saved at secondary too
    method, network_id = saved_by_a_first_payment()
    payment_method_create(gateway="secondary", token="pm_card_visa", customer=method.customer)
    method.refresh_from_db()
    assert credentials(method) == {"primary", "secondary"}
    assert method.network_transaction_id == network_id  # the first customer-initiated charge's
    sub = subscription_create(
        customer_id=str(method.customer_id),
        price_id=monthly_price().id,
        currency="usd",
        payment_method=method.pk,
    )
    assert sub.status == "active"

    # when primary declines (soft) at the renewal
    configure("primary", decline_rate=1)
    clock.to(sub.current_period_end + timedelta(hours=1))
    run()

    # then secondary recovered it, off-session, flagged recurring, with the network id passed
    inv, intent = renewal(sub)
    assert inv.status == "paid" and intent.status == "succeeded"
    assert intent.off_session and intent.recurring
    assert attempts_of(intent) == [("primary", "declined", "generic_decline"), ("secondary", "captured", "")]
    recovered = SimulatorCharge.objects.get(attempt_id=f"{intent.id}_2")
    assert recovered.account == "secondary" and recovered.off_session
    assert recovered.network_transaction_id_passed == network_id
    assert not SimulatorCharge.objects.filter(attempt_id=f"{intent.id}_1").exists()  # charged once


@pytest.mark.parametrize("how", ["down", "declining"])
def test_a_renewal_is_recovered_through_the_vault_once_and_the_credential_stored(billing, clock, how):
    # given a card saved only at primary (whose simulator vault is on) by a first payment
    configure("primary", vault=True)
    method, network_id = saved_by_a_first_payment()
    assert credentials(method) == {"primary"}
    sub = subscription_create(
        customer_id=str(method.customer_id),
        price_id=monthly_price().id,
        currency="usd",
        payment_method=method.pk,
    )

    # when primary is down (or declines) at the renewal
    configure("primary", vault=True, **({"down": True} if how == "down" else {"decline_rate": 1}))
    clock.to(sub.current_period_end + timedelta(hours=1))
    run()

    # then secondary charged it once, through primary's vault, with the network id passed
    inv, intent = renewal(sub)
    assert inv.status == "paid" and intent.gateway_account.name == "secondary"
    charged = list(SimulatorCharge.objects.filter(attempt_id__startswith=f"{intent.id}_"))
    assert [c.account for c in charged] == ["secondary"]
    assert charged[0].network_transaction_id_passed == network_id and charged[0].off_session
    last = PaymentAttempt.objects.filter(intent=intent).order_by("-number").first()
    assert intent.routing["via"][last.id]["from"] == "primary"
    # and secondary's own credential is stored: the next renewal goes direct
    assert credentials(method) == {"primary", "secondary"}


def test_off_session_authentication_required_fails_the_attempt_and_dunning_retries_it(billing, clock):
    # given a subscription on a card that always needs the customer to authenticate
    jenny = customer_create(email="jenny@example.com")
    sub = subscription_create(
        customer_id=jenny.pk,
        price_id=monthly_price().id,
        currency="usd",
        payment_method="pm_card_authenticationRequired",
    )
    inv = Invoice.objects.get(subscription=sub)
    intent = PaymentIntent.objects.get(pk=inv.payment_id)

    # then the first charge waits for the customer: the invoice attempt failed, to retry
    assert sub.status == "past_due" and intent.status == "requires_action"
    assert intent.next_action == {"type": "authenticate", "reason": "authentication_required"}
    first = inv.attempts.get()
    assert (first.status, first.decline_code, first.action) == ("failed", "authentication_required", "retry")
    assert attempts_of(intent) == [("primary", "declined", "authentication_required")]  # no failover

    # when dunning retries the next day, the payment is confirmed again from requires_action
    run_daily(clock, 1)
    inv.refresh_from_db()
    assert [a.decline_code for a in inv.attempts.order_by("number")] == ["authentication_required"] * 2
    assert [a[2] for a in attempts_of(intent)] == ["authentication_required"] * 2
    # and jenny's emails are billing's alone, each with the link to authenticate the payment and
    # the card page (payments sends no second email for an invoice's payment)
    sent = [m for m in mail.outbox if "jenny@example.com" in m.to]
    assert sent and all(
        f"/pay/{intent.id}/authenticate?token=" in m.body and "/billing/card/" in m.body for m in sent
    )

    # and when the customer gives a card that needs no authentication, it is charged
    subscription_payment_method_update(subscription_id=sub.id, payment_method="pm_card_visa")
    clock.to(T0 + timedelta(days=1, hours=1))
    run()
    inv.refresh_from_db()
    intent.refresh_from_db()
    assert inv.status == "paid" and intent.status == "succeeded"
    assert SimulatorCharge.objects.filter(attempt_id__startswith=f"{intent.id}_").count() == 1
