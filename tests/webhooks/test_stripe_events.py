"""Stripe events applied to our payments, forward only: an unknown attempt resolved, events out of
order, duplicates, refunds made outside our API, disputes opened and settled."""

from __future__ import annotations

import pytest

from apps.core.durable import durable_run
from apps.core.models import DurableTask
from apps.ledger.models import LedgerEvent
from apps.payments.models import Dispute, InboundEvent, LateCharge, PaymentAttempt, Refund, SimulatorCharge
from apps.payments.news import inbound_event_process, inbound_events_reprocess
from apps.payments.services import late_charge_notify, payment_intent_create, payment_refund
from tests.webhooks.processors import (
    STRIPE_API,
    event_of,
    fixture,
    lost_answer,
    post_stripe,
    process_queued,
    reload,
    stripe_body,
    stripe_event,
    stripe_intent,
    stripe_payment,
)

HOST = "alpha.localhost"
PI = "pi_3QxWebhookIntent01"


def deliver(client, event_type: str, obj: dict, event_id: str) -> None:
    response = post_stripe(client, stripe_body(stripe_event(event_type, obj, id=event_id)))
    assert response.status_code == 200, response.content


def intent_news(attempt: PaymentAttempt, **fields) -> dict:
    return stripe_intent(
        id=PI, amount=attempt.intent.amount, currency="usd", metadata={"attempt_id": attempt.id}, **fields
    )


def ledger_types(intent) -> list[str]:
    return list(
        LedgerEvent.objects.filter(stream=intent.pk).order_by("version").values_list("type", flat=True)
    )


def test_an_unknown_attempt_is_resolved_by_payment_intent_succeeded(gateways, processor, host_client):
    # Given a payment whose answer from Stripe was lost: it waits, unknown, for a resolution
    intent, attempt = stripe_payment(processor)
    assert (intent.status, attempt.status, attempt.reference) == ("processing", "unknown", "")

    # When Stripe tells us, by webhook, that the PaymentIntent succeeded
    deliver(
        host_client(HOST),
        "payment_intent.succeeded",
        intent_news(attempt, status="succeeded", amount_received=2000),
        "evt_succeeded_1",
    )
    assert process_queued() == ["done"]

    # Then the attempt is captured with Stripe's id, the payment succeeded, the capture is posted once
    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, attempt.reference, attempt.amount_captured) == ("captured", PI, 2000)
    assert (intent.status, intent.amount_received, intent.gateway_account.name) == (
        "succeeded",
        2000,
        "stripe_main",
    )
    assert ledger_types(intent) == [
        "PaymentIntentCreated",
        "AttemptStarted",
        "AttemptUnknown",
        "ChargeCaptured",
    ]
    event = event_of("evt_succeeded_1")
    assert (event.state, event.attempts, event.last_error) == ("processed", 1, "")
    assert event.processed_at is not None
    assert event.result == f"attempt {attempt.id} unknown -> captured (payment succeeded)"


@pytest.mark.parametrize(
    ("order", "second_did"),
    [
        (("payment_intent.amount_capturable_updated", "payment_intent.succeeded"), "authorized -> captured"),
        (("payment_intent.succeeded", "payment_intent.amount_capturable_updated"), "stays captured"),
    ],
    ids=["in-order", "succeeded-first"],
)
def test_authorised_then_captured_ends_captured_in_either_order(
    gateways, processor, host_client, order, second_did
):
    # Given a manual-capture payment whose answer was lost, then captured from Stripe's dashboard
    intent, attempt = stripe_payment(processor, capture_method="manual")
    news = {
        "payment_intent.amount_capturable_updated": intent_news(
            attempt, status="requires_capture", amount_capturable=2000, capture_method="manual"
        ),
        "payment_intent.succeeded": intent_news(
            attempt, status="succeeded", amount_received=2000, capture_method="manual"
        ),
    }
    client = host_client(HOST)

    # When the two events arrive in the given order (each delivered twice)
    for i, kind in enumerate(order):
        deliver(client, kind, news[kind], f"evt_{i}")
        deliver(client, kind, news[kind], f"evt_{i}")
        process_queued()

    # Then the end state is the same: captured once
    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, attempt.amount_captured) == ("captured", 2000)
    assert (intent.status, intent.amount_received, intent.amount_capturable) == ("succeeded", 2000, 0)
    assert ledger_types(intent).count("ChargeCaptured") == 1
    assert InboundEvent.objects.count() == 2
    assert set(InboundEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert event_of("evt_1").result == f"attempt {attempt.id} {second_did} (payment succeeded)"


def test_capture_in_the_dashboard_of_an_authorised_payment(gateways, processor, host_client):
    answer = stripe_intent(
        id=PI,
        amount=2000,
        status="requires_capture",
        amount_capturable=2000,
        capture_method="manual",
        metadata={},
    )
    intent, attempt = stripe_payment(processor, capture_method="manual", answer=answer)
    assert (intent.status, attempt.status) == ("requires_capture", "authorized")

    deliver(
        host_client(HOST),
        "payment_intent.succeeded",
        intent_news(attempt, status="succeeded", amount_received=1500, capture_method="manual"),
        "evt_captured",
    )
    process_queued()

    intent = reload(intent)
    assert (intent.status, intent.amount_received, intent.amount_capturable) == ("succeeded", 1500, 0)
    assert LedgerEvent.objects.get(stream=intent.pk, type="ChargeCaptured").payload["amount"] == 1500


def test_an_expired_authorisation_cancels_the_payment(gateways, processor, host_client):
    answer = stripe_intent(id=PI, amount=2000, status="requires_capture", amount_capturable=2000, metadata={})
    intent, attempt = stripe_payment(processor, capture_method="manual", answer=answer)

    deliver(
        host_client(HOST),
        "payment_intent.canceled",
        intent_news(attempt, status="canceled", cancellation_reason="automatic"),
        "evt_canceled",
    )
    process_queued()

    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, intent.status, intent.amount_capturable) == ("canceled", "canceled", 0)
    assert ledger_types(intent)[-2:] == ["AuthorizationVoided", "PaymentCanceled"]


def test_canceled_for_an_unknown_attempt_means_nothing_was_charged_and_the_payment_continues(
    gateways, processor, host_client
):
    intent, attempt = stripe_payment(processor)

    deliver(
        host_client(HOST),
        "payment_intent.canceled",
        intent_news(attempt, status="canceled", cancellation_reason="abandoned"),
        "evt_canceled",
    )
    process_queued()

    intent = reload(intent)
    assert list(intent.attempts.values_list("gateway_account__name", "status")) == [
        ("stripe_main", "failed"),
        ("primary", "captured"),
    ]
    assert intent.status == "succeeded"
    assert SimulatorCharge.objects.filter(attempt_id__startswith=intent.pk).count() == 1


def test_an_older_authorisation_after_the_cancellation_changes_nothing(gateways, processor, host_client):
    _, attempt = stripe_payment(processor, capture_method="manual")
    client = host_client(HOST)
    deliver(client, "payment_intent.canceled", intent_news(attempt, status="canceled"), "evt_canceled")
    process_queued()

    deliver(
        client,
        "payment_intent.amount_capturable_updated",
        intent_news(attempt, status="requires_capture", amount_capturable=2000),
        "evt_older",
    )
    process_queued()

    attempt.refresh_from_db()
    assert attempt.status == "failed"
    older = event_of("evt_older")
    assert older.state == "processed"
    assert older.result == f"older news: PaymentIntent {PI} was canceled since (evt_canceled)"


def test_payment_failed_for_an_unknown_attempt_is_a_decline_and_the_mesh_decides(
    gateways, processor, host_client
):
    intent, attempt = stripe_payment(processor)
    error = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
    }

    deliver(
        host_client(HOST),
        "payment_intent.payment_failed",
        intent_news(attempt, status="requires_payment_method", last_payment_error=error),
        "evt_failed",
    )
    process_queued()

    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, attempt.decline_code, attempt.outcome) == (
        "declined",
        "generic_decline",
        "declined_soft",
    )
    # generic_decline fails over (the default decline table): the simulator takes it
    assert intent.status == "succeeded"
    assert intent.gateway_account.name == "primary"


def test_an_event_for_a_payment_intent_we_did_not_make_is_ignored(gateways, host_client):
    deliver(
        host_client(HOST),
        "payment_intent.succeeded",
        stripe_intent(id="pi_not_ours", status="succeeded", metadata={}),
        "evt_other",
    )
    process_queued()

    event = event_of("evt_other")
    assert (event.state, event.result) == (
        "processed",
        "ignored: PaymentIntent pi_not_ours is not one of our attempts",
    )


def test_money_on_an_attempt_we_closed_is_a_late_charge_refunded_automatically(
    gateways, processor, host_client, mailoutbox, django_capture_on_commit_callbacks
):
    # Given an attempt closed as failed (Stripe was down: nothing sent) and the payment moved on
    processor.add(
        "POST", f"{STRIPE_API}/v1/payment_intents", status=503, json={"error": {"type": "api_error"}}
    )
    intent = payment_intent_create(amount=2000, currency="usd", payment_method="pm_card_visa", confirm=True)
    failed = intent.attempts.get(gateway_account__name="stripe_main")
    assert failed.status == "failed"

    # When Stripe says that attempt's PaymentIntent succeeded after all
    deliver(
        host_client(HOST),
        "payment_intent.succeeded",
        intent_news(failed, status="succeeded", amount_received=2000),
        "evt_late",
    )
    assert process_queued() == ["done"]

    # Then the attempt stays failed, and the money is a late charge posted to suspense, to reverse
    failed.refresh_from_db()
    assert failed.status == "failed"
    assert event_of("evt_late").state == "processed"
    late = LateCharge.objects.get(attempt=failed)
    assert (late.amount, late.captured, late.status, late.reference) == (2000, True, "reversing", PI)
    assert "LateChargeCaptured" in ledger_types(intent)

    # When the reversal runs: Stripe refunds it (keyed on the late charge's id)
    refund = fixture("stripe/refund.json") | {"id": "re_3QxLate", "amount": 2000, "status": "succeeded"}
    processor.add("POST", f"{STRIPE_API}/v1/refunds", json=refund)
    task = DurableTask.objects.get(idempotency_key=f"late-reverse:{late.pk}")
    # (on-commit callbacks are not run here: the ledger's account cache must not learn rows of a
    # test transaction that rolls back; the operators' email is sent below as the commit would)
    with django_capture_on_commit_callbacks() as callbacks:
        assert durable_run(task_id=str(task.pk)) == "done"
    assert any("late_charge_notify" in repr(c.__code__.co_names) for c in callbacks)
    late_charge_notify(late_charge_id=late.pk)

    # Then it is reversed, posted back, and the operators are told
    late.refresh_from_db()
    assert late.status == "reversed"
    assert ledger_types(intent)[-1] == "LateChargeRefunded"
    sent = [r for r in processor.calls if r.request.url.endswith("/v1/refunds")]
    assert len(sent) == 1 and sent[0].request.headers["Idempotency-Key"] == f"{late.pk}:refund"
    assert [m.subject for m in mailoutbox] == [f"Late charge of 20.00 USD on {intent.pk} refunded"]


def _succeeded_payment(processor):
    charge = fixture("stripe/charge.json") | {
        "id": "ch_3QxWebhook",
        "payment_intent": PI,
        "captured": True,
        "amount": 2000,
        "amount_captured": 2000,
    }
    answer = stripe_intent(
        id=PI, amount=2000, amount_received=2000, status="succeeded", latest_charge=charge, metadata={}
    )
    return stripe_payment(processor, answer=answer)


def _charge(**fields) -> dict:
    charge = fixture("stripe/charge.json")
    charge.update(
        {
            "id": "ch_3QxWebhook",
            "payment_intent": PI,
            "amount": 2000,
            "amount_captured": 2000,
            "captured": True,
            "balance_transaction": None,
            **fields,
        }
    )
    return charge


def test_refunds_made_in_the_dashboard_are_recorded_once_and_older_events_change_nothing(
    gateways, processor, host_client
):
    intent, attempt = _succeeded_payment(processor)
    assert intent.status == "succeeded"
    client = host_client(HOST)

    # When the dashboard refunds 500, then 700 more; the second event arrives first, then the first, twice
    deliver(client, "charge.refunded", _charge(amount_refunded=1200, refunded=False), "evt_refund_2")
    deliver(client, "charge.refunded", _charge(amount_refunded=500, refunded=False), "evt_refund_1")
    deliver(client, "charge.refunded", _charge(amount_refunded=500, refunded=False), "evt_refund_1")
    process_queued()

    # Then the 1200 Stripe refunded in all is recorded, once
    intent = reload(intent)
    assert intent.amount_refunded == 1200
    refund = Refund.objects.get(intent=intent)
    assert (refund.amount, refund.status, refund.reference) == (
        1200,
        "succeeded",
        "ch_3QxWebhook:refunded:1200",
    )
    assert ledger_types(intent).count("RefundSucceeded") == 1
    assert event_of("evt_refund_1").result == f"refunds of attempt {attempt.id} already recorded (1200)"


def test_our_refund_whose_answer_was_lost_is_settled_by_charge_refunded(gateways, processor, host_client):
    intent, attempt = _succeeded_payment(processor)
    # Stripe's answer to the refund is lost: the refund stays pending (a worker would retry it)
    lost_answer(processor, f"{STRIPE_API}/v1/refunds")
    refund = payment_refund(intent_id=intent.pk, amount=800)
    assert refund.status == "pending"

    stripe_refund = fixture("stripe/refund.json") | {
        "id": "re_3QxStripeRefund",
        "amount": 800,
        "charge": "ch_3QxWebhook",
        "payment_intent": PI,
        "metadata": {"refund_id": refund.pk, "attempt_id": attempt.id},
    }
    charge = _charge(
        amount_refunded=800, refunds={"object": "list", "data": [stripe_refund], "has_more": False}
    )
    deliver(host_client(HOST), "charge.refunded", charge, "evt_refunded")
    process_queued()

    refund.refresh_from_db()
    intent = reload(intent)
    assert (refund.status, refund.reference) == ("succeeded", "re_3QxStripeRefund")
    assert intent.amount_refunded == 800
    assert Refund.objects.filter(intent=intent).count() == 1  # not also taken for a dashboard refund
    assert LedgerEvent.objects.get(stream=intent.pk, type="RefundSucceeded").payload["amount"] == 800


def test_a_dispute_takes_the_amount_out_of_clearing_and_a_won_one_puts_it_back(
    gateways, processor, host_client
):
    intent, _ = _succeeded_payment(processor)
    dispute = fixture("stripe/dispute.json") | {
        "charge": "ch_3QxWebhook",
        "payment_intent": PI,
        "amount": 2000,
    }

    deliver(host_client(HOST), "charge.dispute.created", dispute, "evt_dispute")
    deliver(host_client(HOST), "charge.dispute.created", dispute, "evt_dispute")  # a redelivery
    process_queued()

    opened = Dispute.objects.get(intent=intent)
    assert event_of("evt_dispute").result == f"dispute {opened.id} opened for 2000 USD"
    assert (opened.status, opened.reference, opened.reason) == ("open", dispute["id"], "general")
    assert opened.allocations == [{"account": "disputes", "amount": 2000}]  # no split: the platform
    assert LedgerEvent.objects.filter(stream=intent.pk, type="DisputeOpened").count() == 1

    deliver(host_client(HOST), "charge.dispute.closed", dispute | {"status": "won"}, "evt_dispute_won")
    deliver(host_client(HOST), "charge.dispute.closed", dispute | {"status": "lost"}, "evt_dispute_late")
    process_queued()

    assert Dispute.objects.get(pk=opened.pk).status == "won"
    assert event_of("evt_dispute_late").result == f"dispute {opened.id} stays won"
    assert reload(intent).status == "succeeded"
    won = LedgerEvent.objects.get(stream=intent.pk, type="DisputeWon")
    assert won.payload["allocations"] == opened.allocations


def test_reprocessing_an_applied_event_is_harmless(gateways, processor, host_client):
    intent, attempt = stripe_payment(processor)
    deliver(
        host_client(HOST),
        "payment_intent.succeeded",
        intent_news(attempt, status="succeeded", amount_received=2000),
        "evt_x",
    )
    process_queued()
    event = event_of("evt_x")

    assert inbound_events_reprocess(inbound_event_ids=[event.pk]) == 1
    assert event_of("evt_x").state == "pending"
    assert process_queued() == ["done"]

    event = event_of("evt_x")
    assert (event.state, event.attempts) == ("processed", 2)
    assert event.result == f"attempt {attempt.id} stays captured (payment succeeded)"
    assert ledger_types(reload(intent)).count("ChargeCaptured") == 1
    assert inbound_event_process(inbound_event_id=event.pk) == "processed"  # already processed: skipped
    assert event_of("evt_x").attempts == 2


def _requires_action(processor):
    answer = stripe_intent(
        id=PI, amount=2000, status="requires_action", next_action={"type": "use_stripe_sdk"}, metadata={}
    )
    intent, attempt = stripe_payment(processor, answer=answer)
    assert (intent.status, attempt.status) == ("requires_action", "requires_action")
    return intent, attempt


def test_a_customer_completing_3d_secure_is_learnt_from_the_webhook(gateways, processor, host_client):
    intent, attempt = _requires_action(processor)

    deliver(
        host_client(HOST),
        "payment_intent.succeeded",
        intent_news(attempt, status="succeeded", amount_received=2000),
        "evt_3ds_done",
    )
    process_queued()

    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, intent.status, intent.amount_received, intent.next_action) == (
        "captured",
        "succeeded",
        2000,
        {},
    )
    assert ledger_types(intent)[-1] == "ChargeCaptured"


def test_a_failed_3d_secure_fails_the_payment_so_it_can_be_confirmed_again(gateways, processor, host_client):
    intent, attempt = _requires_action(processor)
    error = {
        "type": "card_error",
        "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication.",
    }

    deliver(
        host_client(HOST),
        "payment_intent.payment_failed",
        intent_news(attempt, status="requires_payment_method", last_payment_error=error),
        "evt_3ds_failed",
    )
    process_queued()

    attempt.refresh_from_db()
    intent = reload(intent)
    # Stripe's payment_intent_authentication_failure, in the neutral vocabulary
    assert (attempt.status, attempt.decline_code) == ("declined", "authentication_failed")
    assert (intent.status, intent.last_error["code"], intent.next_action) == (
        "failed",
        "authentication_failed",
        {},
    )
    assert ledger_types(intent)[-2:] == ["AttemptDeclined", "PaymentFailed"]
