"""No path charges a customer twice (issue 11's scenarios 2, 3 and 4, and every breaker open).

Each test reproduces one way the first wave charged twice or failed a payment it could have saved,
through the real services against the simulator, whose own records (``SimulatorCharge``) are the
processor's truth."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.durable import durable_run
from apps.core.models import DurableTask
from apps.ledger.models import Entry
from apps.payments.breaker import CircuitBreaker
from apps.payments.gateways.base import GatewayConfig, GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import LateCharge, PaymentAttempt, PaymentIntent, SimulatorCharge
from apps.payments.services import (
    AttemptStillUnknown,
    PaymentError,
    payment_attempt_apply_gateway_truth,
    payment_attempt_resolve,
    payment_confirm,
    payment_intent_create,
    payments_reconcile,
)
from apps.payments.services.drive import attempt_finish, charge_request
from apps.payments.statemachine import attempt_to, intent_to
from tests.payments.conftest import configure


def simulator(name: str = "primary") -> SimulatorGateway:
    return SimulatorGateway(GatewayConfig(account_id=name, settings={}))


def kept_charges(intent: PaymentIntent) -> list[tuple[str, str, int]]:
    """The processor's charges for this payment that still hold the customer's money."""
    return [
        (c.account, c.status, c.amount_captured - c.amount_refunded)
        for c in SimulatorCharge.objects.filter(attempt_id__startswith=intent.id + "_").order_by("created_at")
        if c.status == "authorized" or (c.status == "captured" and c.amount_captured > c.amount_refunded)
    ]


def attempts(intent: PaymentIntent) -> list[tuple[str, str]]:
    return list(
        PaymentAttempt.objects.filter(intent_id=intent.id)
        .order_by("number")
        .values_list("gateway_account__name", "status")
    )


def pay(pm="pm_card_visa", amount=10000, **kw) -> PaymentIntent:
    return payment_intent_create(amount=amount, currency="usd", payment_method=pm, confirm=True, **kw)


def run_task(key: str) -> str:
    return durable_run(task_id=str(DurableTask.objects.get(idempotency_key=key).pk))


# --------------------------------------------------------------------------- scenario 2


def test_confirming_again_from_requires_action_closes_the_open_attempt_so_a_late_challenge_cannot_charge(
    mesh,
):
    # Given a payment waiting for 3-D Secure on its first attempt
    intent = pay(pm="pm_card_authenticationRequired")
    assert intent.status == "requires_action"
    first = intent.attempts.get()

    # When the storefront confirms it again with another card, then the customer completes the
    # old challenge anyway (a second tab, a slow bank page)
    again = payment_confirm(intent_id=intent.id, payment_method="pm_card_visa")
    news = simulator().action_complete(attempt_id=first.id)
    payment_attempt_apply_gateway_truth(attempt_id=first.id, result=news)

    # Then the old attempt was cancelled at the gateway before the new one started: one charge
    assert again.status == "succeeded"
    assert news.status == GatewayStatus.CANCELED
    assert attempts(intent) == [("primary", "canceled"), ("primary", "captured")]
    assert kept_charges(intent) == [("primary", "captured", 10000)]
    assert not LateCharge.objects.exists()


def test_confirming_again_is_refused_while_the_open_attempt_cannot_be_closed(mesh):
    intent = pay(pm="pm_card_authenticationRequired")
    configure("primary", down=True)  # the cancel cannot reach the gateway

    with pytest.raises(PaymentError) as refused:
        payment_confirm(intent_id=intent.id, payment_method="pm_card_visa")

    assert refused.value.code == "payment_intent_unexpected_state"  # 409 in the API
    assert attempts(intent) == [("primary", "requires_action")]  # nothing new started
    assert PaymentIntent.objects.get(pk=intent.id).status == "requires_action"
    assert kept_charges(intent) == []


def test_a_challenge_completed_before_the_new_confirmation_wins_and_the_confirmation_is_refused(mesh):
    intent = pay(pm="pm_card_authenticationRequired")
    first = intent.attempts.get()
    simulator().action_complete(attempt_id=first.id)  # its webhook has not arrived yet

    with pytest.raises(PaymentError, match="authenticated by the customer meanwhile"):
        payment_confirm(intent_id=intent.id, payment_method="pm_card_visa")

    intent.refresh_from_db()
    assert (intent.status, intent.amount_received) == ("succeeded", 10000)
    assert attempts(intent) == [("primary", "captured")]
    assert kept_charges(intent) == [("primary", "captured", 10000)]


# --------------------------------------------------------------------------- scenario 3


def _pending_attempt(*, lease_until) -> PaymentAttempt:
    """A payment whose first attempt was started at primary and whose call has not returned."""
    intent = payment_intent_create(amount=5000, currency="usd", payment_method="pm_card_visa")
    intent_to(intent, "processing")
    intent.routing = {"tried": ["primary"]}
    intent.save()
    from apps.payments.models import GatewayAccount

    return PaymentAttempt.objects.create(
        id=f"{intent.id}_1",
        intent=intent,
        number=1,
        gateway_account=GatewayAccount.objects.get(name="primary"),
        lease_until=lease_until,
    )


def test_the_resolver_leaves_an_attempt_alone_while_its_call_may_be_in_flight(mesh):
    attempt = _pending_attempt(lease_until=timezone.now() + timedelta(seconds=60))
    PaymentAttempt.objects.filter(pk=attempt.pk).update(updated_at=timezone.now() - timedelta(minutes=5))

    assert payments_reconcile() == 0
    with pytest.raises(AttemptStillUnknown, match="in flight"):
        payment_attempt_resolve(attempt_id=attempt.id)

    assert PaymentAttempt.objects.get(pk=attempt.pk).status == "pending"
    assert PaymentAttempt.objects.filter(intent_id=attempt.intent_id).count() == 1  # no failover


def test_a_call_answering_after_the_resolver_closed_its_attempt_cannot_charge_twice(mesh):
    # Given an attempt whose call outlived its lease: the resolver closes it and the payment
    # fails over to secondary
    attempt = _pending_attempt(lease_until=timezone.now() - timedelta(seconds=1))
    assert payments_reconcile() == 1
    payment_attempt_resolve(attempt_id=attempt.id)
    intent = PaymentIntent.objects.get(pk=attempt.intent_id)
    assert attempts(intent) == [("primary", "failed"), ("secondary", "captured")]
    # and the succeeded payment carries no error of the attempt resolved as "no charge"
    assert (intent.status, intent.last_error) == ("succeeded", {})

    # When the first call finally reaches primary and its answer comes back
    late = simulator().authorize(charge_request(intent, attempt))
    attempt_finish(attempt.id, late)

    # Then the resolver's cancellation by attempt id stopped it: one charge in all
    assert late.status == GatewayStatus.CANCELED
    assert kept_charges(intent) == [("secondary", "captured", 5000)]


def test_a_late_success_on_a_closed_attempt_is_refunded_automatically_and_posted(mesh, mailoutbox):
    # Given an attempt closed as failed while the payment was paid at secondary
    attempt = _pending_attempt(lease_until=timezone.now() - timedelta(seconds=1))
    payment_attempt_resolve(attempt_id=attempt.id)
    intent = PaymentIntent.objects.get(pk=attempt.intent_id)
    # ...and a processor that charged it all the same (one whose cancel could not stop it)
    charge = SimulatorCharge.objects.create(
        account="primary",
        attempt_id=f"{attempt.id}x",  # beside the tombstone; the answer names this charge
        reference="sim_ch_late",
        amount=5000,
        currency="USD",
        payment_method="pm_card_visa",
        status="captured",
        amount_captured=5000,
    )

    # When its late answer arrives (twice: a duplicate changes nothing)
    answer = GatewayResult(
        Outcome.SUCCEEDED,
        GatewayStatus.CAPTURED,
        reference="sim_ch_late",
        amount_authorized=5000,
        amount_captured=5000,
        fee=175,
    )
    assert attempt_finish(attempt.id, answer) == "done"
    assert attempt_finish(attempt.id, answer) == "done"

    # Then it is recorded once, in suspense, and refunded at primary by its durable task
    late = LateCharge.objects.get()
    assert (late.attempt_id, late.amount, late.captured, late.status) == (attempt.id, 5000, True, "reversing")
    assert run_task(f"late-reverse:{late.id}") == "done"
    late.refresh_from_db()
    charge.refresh_from_db()
    assert late.status == "reversed"
    assert charge.amount_refunded == 5000
    assert kept_charges(intent) == [("secondary", "captured", 5000)]
    # ...and the operators see it in the admin, in major units, read-only
    from django.contrib.auth import get_user_model
    from django.test import Client

    admin = Client(HTTP_HOST="alpha.localhost")
    admin.force_login(get_user_model().objects.get(username="ops@alpha.test"))
    page = admin.get("/admin/payments/latecharge/")
    assert page.status_code == 200 and late.id.encode() in page.content and b"50.00 USD" in page.content
    assert admin.get(f"/admin/payments/latecharge/{late.id}/delete/").status_code == 403
    lines = sorted(
        (e.event.type, e.account.code, e.side, e.amount)
        for e in Entry.objects.filter(
            event__stream=intent.id, event__type__startswith="LateCharge"
        ).select_related("account", "event")
    )
    assert lines == [
        ("LateChargeCaptured", "processor_clearing:primary", "C", 175),
        ("LateChargeCaptured", "processor_clearing:primary", "D", 5000),
        ("LateChargeCaptured", "processor_fees", "D", 175),
        ("LateChargeCaptured", "suspense", "C", 5000),
        ("LateChargeRefunded", "processor_clearing:primary", "C", 5000),
        ("LateChargeRefunded", "suspense", "D", 5000),
    ]


# --------------------------------------------------------------------------- scenario 4


def test_a_decline_found_by_the_resolver_is_a_decline_not_a_failover(mesh, monkeypatch):
    # Given an attempt whose answer was lost, and a gateway whose record says: stolen card
    attempt = _pending_attempt(lease_until=timezone.now() - timedelta(seconds=1))
    attempt_to(attempt, "unknown")
    attempt.save()
    monkeypatch.setattr(
        SimulatorGateway,
        "retrieve",
        lambda self, **kw: GatewayResult(
            Outcome.DECLINED_HARD,
            GatewayStatus.DECLINED,
            decline_code="stolen_card",
            message="card declined: stolen_card",
        ),
    )

    payment_attempt_resolve(attempt_id=attempt.id)

    # Then the payment fails as a hard decline: never retried at another gateway
    intent = PaymentIntent.objects.get(pk=attempt.intent_id)
    assert attempts(intent) == [("primary", "declined")]
    assert (intent.status, intent.last_error["decline_code"]) == ("failed", "stolen_card")
    assert kept_charges(intent) == []


# --------------------------------------------------------------------------- every breaker open


def test_every_breaker_open_tries_the_gateway_closest_to_its_probe(mesh, settings):
    settings.CIRCUIT_BREAKER = {
        **settings.CIRCUIT_BREAKER,
        "consecutive_failures": 1,
        "cooldown_seconds": 600,
    }
    CircuitBreaker("primary").record(success=False)  # opened first: its probe comes first
    CircuitBreaker("secondary").record(success=False)

    intent = pay()

    assert intent.status == "succeeded"
    assert attempts(intent) == [("primary", "captured")]
    assert (
        "every breaker open: trying primary, the closest to its probe"
        in intent.routing["decision"]["reasons"]
    )


# --------------------------------------------------------------------------- lost news


def test_a_challenge_completed_whose_webhook_is_lost_is_found_by_the_scheduled_check(mesh):
    # Given a payment waiting for 3-D Secure, completed by the customer, whose webhook never comes
    intent = pay(pm="pm_card_authenticationRequired")
    attempt = intent.attempts.get()
    assert attempt.next_resolve_at is not None  # its first check is scheduled
    simulator().action_complete(attempt_id=attempt.id)

    # When the reconcile job runs at the scheduled check
    PaymentAttempt.objects.filter(pk=attempt.pk).update(next_resolve_at=timezone.now() - timedelta(seconds=1))
    assert payments_reconcile() >= 1
    check = DurableTask.objects.get(
        handler__endswith=".payment_attempt_refresh", kwargs__attempt_id=attempt.id
    )
    assert durable_run(task_id=str(check.pk)) == "done"

    # Then the payment is applied as the webhook would have: succeeded, posted once
    intent.refresh_from_db()
    assert (intent.status, intent.amount_received) == ("succeeded", 10000)
    assert attempts(intent) == [("primary", "captured")]


def test_the_resolver_that_learns_nothing_asks_again_later_instead_of_failing_over(mesh, monkeypatch):
    # Given an attempt whose answer was lost, and a gateway whose lookup and replay both lose
    # their answers too
    attempt = _pending_attempt(lease_until=timezone.now() - timedelta(seconds=1))
    attempt_to(attempt, "unknown")
    attempt.save()
    lost = GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="timeout")
    monkeypatch.setattr(SimulatorGateway, "retrieve", lambda self, **kw: lost)
    monkeypatch.setattr(SimulatorGateway, "authorize", lambda self, request: lost)

    with pytest.raises(AttemptStillUnknown):
        payment_attempt_resolve(attempt_id=attempt.id)

    # Then nothing was cancelled or failed over: a decline it cannot see stays a decline
    intent = PaymentIntent.objects.get(pk=attempt.intent_id)
    assert attempts(intent) == [("primary", "unknown")]
    assert intent.status == "processing"


def test_a_processing_payment_left_with_no_open_attempt_is_driven_on_by_the_reconcile_job(mesh):
    # Given a payment whose first attempt settled (nothing charged) and whose process died before
    # starting the next one: processing, nothing open, nothing queued
    attempt = _pending_attempt(lease_until=timezone.now() - timedelta(seconds=1))
    attempt_to(attempt, "failed")
    attempt.save()
    PaymentIntent.objects.filter(pk=attempt.intent_id).update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )

    # When the reconcile job runs, and the work it queued
    assert payments_reconcile() == 1
    task = DurableTask.objects.get(handler__endswith=".payment_continue", kwargs__intent_id=attempt.intent_id)
    assert durable_run(task_id=str(task.pk)) == "done"

    # Then the payment went on to the next gateway, charged once
    intent = PaymentIntent.objects.get(pk=attempt.intent_id)
    assert intent.status == "succeeded"
    assert attempts(intent) == [("primary", "failed"), ("secondary", "captured")]
    assert kept_charges(intent) == [("secondary", "captured", 5000)]
