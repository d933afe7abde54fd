"""Dunning through the mesh, with the clock moved day by day: issuer advice, cross-gateway
recovery, card updates and the policy's final action."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core import mail

from apps.billing.models import DunningPolicy, Invoice
from apps.billing.selectors import recovery_report
from apps.billing.services import subscription_payment_method_update
from apps.payments.models import PaymentAttempt, SimulatorCharge
from apps.webhooks.models import OutboundEvent
from tests.billing.conftest import T0, configure, monthly_price, run, subscribe


def days_from_t0(when: datetime) -> float:
    return (when - T0) / timedelta(days=1)


def run_daily(clock, days: int, start: datetime = T0) -> None:
    for d in range(1, days + 1):
        clock.to(start + timedelta(days=d))
        run()


def test_generic_declines_retry_on_the_policy_schedule_then_cancel(billing, clock):
    # given a card every issuer declines (generic_decline: the mesh fails over, then gives up)
    sub = subscribe(monthly_price(), card="pm_card_chargeDeclined", email="jenny@example.com")
    assert sub.status == "past_due"
    inv = Invoice.objects.get(subscription=sub)
    # when the job runs daily through the 14-day window
    run_daily(clock, 15)
    # then 8 attempts on days 0, 1, 3, 5, 7, 9, 12, 14, each at both gateways, then the final action
    inv.refresh_from_db()
    attempts = list(inv.attempts.order_by("number"))
    assert [round(days_from_t0(a.started_at)) for a in attempts] == [0, 1, 3, 5, 7, 9, 12, 14]
    assert {tuple(a.gateways) for a in attempts} == {("primary", "secondary")}
    assert {a.decline_code for a in attempts} == {"generic_decline"}
    assert inv.status == "uncollectible"
    sub.refresh_from_db()
    assert sub.status == "canceled"
    assert PaymentAttempt.objects.filter(intent_id=inv.payment_id).count() == 16
    assert not SimulatorCharge.objects.filter(attempt_id__startswith=inv.payment_id).exists()
    # the customer heard of each failure and of the cancellation, with a card-update link
    subjects = [m.subject for m in mail.outbox]
    assert subjects.count("We could not charge your card for Pro plan (20.00 USD)") == 7
    assert subjects[-1] == "Your Pro plan subscription was canceled"
    assert "/billing/card/" in mail.outbox[0].body
    types = list(OutboundEvent.objects.filter(object_id=inv.id).values_list("type", flat=True))
    assert types.count("invoice.payment_failed") == 8


def test_try_again_later_waits_and_the_returning_funds_recover_the_invoice(billing, clock):
    # given a card with insufficient funds (issuer advice: try_again_later)
    sub = subscribe(monthly_price(), card="pm_card_chargeDeclinedInsufficientFunds")
    inv = Invoice.objects.get(subscription=sub)
    first = inv.attempts.get()
    assert (first.decline_code, first.advice_code, first.gateways) == (
        "insufficient_funds",
        "try_again_later",
        ["primary"],  # retry-later declines do not fail over: the same card fails everywhere now
    )
    inv.refresh_from_db()
    assert inv.next_attempt_at is not None
    assert days_from_t0(inv.next_attempt_at) == 3  # not day 1: the advice waits 72 hours
    # when the funds come back on day 4 (no immediate retry) and the job runs daily
    run_daily(clock, 4)
    subscription_payment_method_update(subscription_id=sub.id, payment_method="pm_card_visa", retry_now=False)
    run_daily(clock, 3, start=T0 + timedelta(days=4))
    # then attempt 2 (day 3) failed again and waited 72 h; attempt 3 (day 6) was paid
    inv.refresh_from_db()
    attempts = list(inv.attempts.order_by("number"))
    assert [(round(days_from_t0(a.started_at)), a.status) for a in attempts] == [
        (0, "failed"),
        (3, "failed"),
        (6, "succeeded"),
    ]
    assert (inv.status, inv.amount_paid, inv.next_attempt_at) == ("paid", 2000, None)
    sub.refresh_from_db()
    assert sub.status == "active"
    report = recovery_report(invoice_ids=[inv.id])
    assert report["total"]["failed"] == 1
    assert report["total"]["recovered"] == 1
    assert report["total"]["recovery_rate"] == "1.0000"
    assert report["by_decline_code"][0]["decline_code"] == "insufficient_funds"
    assert report["total"]["recovered_amount"] == [{"currency": "usd", "amount": 2000}]


def test_do_not_try_again_stops_retries_until_the_customer_gives_a_new_card(billing, clock):
    sub = subscribe(monthly_price(), card="pm_card_visa_chargeDeclinedLostCard")
    inv = Invoice.objects.get(subscription=sub)
    inv.refresh_from_db()
    assert inv.retries_stopped.startswith("lost_card")
    assert inv.next_attempt_at == T0 + timedelta(days=14)  # only the final action is scheduled
    run_daily(clock, 5)
    assert inv.attempts.count() == 1
    # when the customer gives a new card on day 5 (the card-update page)
    subscription_payment_method_update(subscription_id=sub.id, payment_method="pm_card_mastercard")
    run()
    # then it is charged at once, on the new card
    inv.refresh_from_db()
    assert inv.status == "paid"
    last = inv.attempts.order_by("-number").first()
    assert (last.number, last.payment_method, last.status) == (2, "pm_card_mastercard", "succeeded")


def test_do_not_try_again_without_a_new_card_ends_in_the_final_action_unpaid(billing, clock):
    DunningPolicy.objects.filter(pk=1).update(final_action="unpaid")
    sub = subscribe(monthly_price(), card="pm_card_chargeDeclinedExpiredCard")
    run_daily(clock, 15)
    inv = Invoice.objects.get(subscription=sub)
    sub.refresh_from_db()
    assert (inv.status, inv.attempts.count(), sub.status) == ("open", 1, "unpaid")
    # an unpaid subscription does not renew; a new card pays the open invoice and reactivates it
    clock.to(T0 + timedelta(days=40))
    run()
    assert Invoice.objects.filter(subscription=sub).count() == 1
    subscription_payment_method_update(subscription_id=sub.id, payment_method="pm_card_visa")
    run()  # pays the open invoice: active again
    run()  # renews the period that ended meanwhile
    sub.refresh_from_db()
    assert sub.status == "active"
    assert sorted(Invoice.objects.filter(subscription=sub).values_list("status", flat=True)) == [
        "paid",
        "paid",
    ]


def test_a_soft_decline_at_one_gateway_is_recovered_by_a_retry_at_another(billing, clock):
    # given a domestic-only primary and a secondary that is down on day 0
    configure("primary", allowed_card_countries=["US"])
    configure("secondary", down=True)
    sub = subscribe(monthly_price(), card="pm_card_gb", currency="eur")
    inv = Invoice.objects.get(subscription=sub)
    first = inv.attempts.get()
    assert (first.status, first.gateways, first.decline_code, first.gateway) == (
        "failed",
        ["primary", "secondary"],
        "transaction_not_allowed",
        "primary",
    )
    # when the secondary is back the next day
    configure("secondary")
    run_daily(clock, 1)
    # then the retry, routed afresh, is declined at primary again and approved at secondary
    inv.refresh_from_db()
    second = inv.attempts.get(number=2)
    assert (second.status, second.gateways, second.gateway) == (
        "succeeded",
        ["primary", "secondary"],
        "secondary",
    )
    assert (inv.status, inv.amount_paid, inv.currency) == ("paid", 1800, "EUR")
    report = recovery_report(invoice_ids=[inv.id])
    assert report["total"]["cross_gateway"] == 1
    assert report["by_gateway"] == [{**report["by_gateway"][0], "gateway": "primary", "recovered": 1}]
