"""Adyen notifications applied to our payments, forward only: an unknown attempt resolved by
AUTHORISATION or TECHNICAL_CANCEL, a refund reported before its capture, duplicates, and the
contradictions an operator must see."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.utils import timezone

from apps.ledger.models import LedgerEvent
from apps.payments.models import InboundEvent, Refund, SimulatorCharge
from apps.payments.news import PROCESS_MAX_ATTEMPTS, inbound_event_process
from apps.payments.services import payment_capture, payment_refund
from tests.webhooks.processors import (
    ADYEN_CHECKOUT,
    MERCHANT,
    adyen_body,
    adyen_item,
    adyen_payment,
    event_of,
    post_adyen,
    process_queued,
    reload,
)

HOST = "alpha.localhost"
PSP = "QFQTPCQ8HXSKGK82"


def deliver(client, *items: dict) -> None:
    response = post_adyen(client, adyen_body(*items))
    assert response.content == b"[accepted]", response.content


def authorised(attempt_id: str = "", amount: int = 1130) -> dict:
    """Adyen's /payments answer for an authorised payment."""
    return {
        "pspReference": PSP,
        "resultCode": "Authorised",
        "amount": {"currency": "EUR", "value": amount},
        "merchantReference": attempt_id,
    }


def ledger_types(intent) -> list[str]:
    return list(
        LedgerEvent.objects.filter(stream=intent.pk).order_by("version").values_list("type", flat=True)
    )


def test_an_unknown_attempt_is_resolved_by_the_authorisation_webhook(gateways, processor, host_client):
    # Given a payment whose answer from Adyen was lost (Adyen has no lookup to ask)
    intent, attempt = adyen_payment(processor)
    assert (intent.status, attempt.status) == ("processing", "unknown")

    # When Adyen's AUTHORISATION webhook says it was authorised (automatic capture)
    deliver(
        host_client(HOST),
        adyen_item(
            "AUTHORISATION",
            merchantReference=attempt.id,
            pspReference=PSP,
            amount={"currency": "EUR", "value": 1130},
        ),
    )
    assert process_queued() == ["done"]

    # Then the attempt is captured with Adyen's reference and the payment succeeded
    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, attempt.reference, attempt.amount_captured) == ("captured", PSP, 1130)
    assert (intent.status, intent.amount_received) == ("succeeded", 1130)
    assert ledger_types(intent)[-1] == "ChargeCaptured"
    event = event_of(f"AUTHORISATION:{PSP}:true")
    assert (event.state, event.result) == (
        "processed",
        f"attempt {attempt.id} unknown -> captured (payment succeeded)",
    )


def test_a_technical_cancel_of_an_unknown_attempt_means_nothing_was_charged(gateways, processor, host_client):
    # Given an unknown attempt at Adyen, which the resolver technically cancelled by our reference
    intent, attempt = adyen_payment(processor)

    # When the TECHNICAL_CANCEL webhook confirms it
    deliver(
        host_client(HOST),
        adyen_item(
            "TECHNICAL_CANCEL",
            merchantReference=f"{attempt.id}:technical-cancel",
            pspReference="TCXH8BWKT9NWQW82",
            originalReference="",
        ),
    )
    process_queued()

    # Then the attempt failed (nothing charged) and the payment went on to the next gateway, once
    intent = reload(intent)
    assert list(intent.attempts.values_list("gateway_account__name", "status")) == [
        ("adyen_main", "failed"),
        ("primary", "captured"),
    ]
    assert intent.status == "succeeded"
    assert SimulatorCharge.objects.filter(attempt_id__startswith=intent.pk).count() == 1


def test_an_authorisation_older_than_the_technical_cancel_changes_nothing(gateways, processor, host_client):
    intent, attempt = adyen_payment(processor)
    client = host_client(HOST)
    deliver(
        client, adyen_item("TECHNICAL_CANCEL", merchantReference=attempt.id, pspReference="TCXH8BWKT9NWQW82")
    )
    process_queued()

    deliver(client, adyen_item("AUTHORISATION", merchantReference=attempt.id, pspReference=PSP))
    process_queued()

    attempt.refresh_from_db()
    assert attempt.status == "failed"
    assert reload(intent).gateway_account.name == "primary"
    event = event_of(f"AUTHORISATION:{PSP}:true")
    assert (event.state, event.result) == (
        "processed",
        f"older news: attempt {attempt.id} was cancelled at Adyen since (TECHNICAL_CANCEL:TCXH8BWKT9NWQW82:true)",
    )


def test_a_refused_authorisation_of_an_unknown_attempt_is_a_decline(gateways, processor, host_client):
    intent, attempt = adyen_payment(processor)

    deliver(
        host_client(HOST),
        adyen_item(
            "AUTHORISATION", merchantReference=attempt.id, pspReference=PSP, success="false", reason="Refused"
        ),
    )
    process_queued()

    attempt.refresh_from_db()
    assert (attempt.status, attempt.decline_code, attempt.message) == (
        "declined",
        "generic_decline",
        "webhook AUTHORISATION refused: Refused",
    )
    assert reload(intent).gateway_account.name == "primary"  # generic_decline fails over


def test_a_refund_reported_before_its_capture_is_applied_once_the_capture_is(
    gateways, processor, host_client
):
    # Given a manual-capture payment authorised at Adyen, then captured and partly refunded in
    # Adyen's Customer Area
    intent, attempt = adyen_payment(processor, capture_method="manual", answer=authorised())
    assert (intent.status, attempt.status, attempt.reference) == ("requires_capture", "authorized", PSP)
    client = host_client(HOST)
    refund = adyen_item(
        "REFUND",
        merchantReference=attempt.id,
        pspReference="RFND8BWKT9NWQW82",
        originalReference=PSP,
        amount={"currency": "EUR", "value": 300},
    )
    capture = adyen_item(
        "CAPTURE",
        merchantReference=attempt.id,
        pspReference="CPTR8BWKT9NWQW82",
        originalReference=PSP,
        amount={"currency": "EUR", "value": 1130},
    )

    # When the REFUND arrives first (twice), then the CAPTURE
    deliver(client, refund)
    deliver(client, refund)
    assert process_queued() == ["retry"]
    waiting = event_of("REFUND:RFND8BWKT9NWQW82:true")
    assert waiting.state == "pending"
    assert waiting.last_error.startswith("waiting: refund RFND8BWKT9NWQW82 of attempt")
    deliver(client, capture)
    assert process_queued() == ["done"]
    with time_machine.travel(timezone.now() + timedelta(seconds=10)):  # the refund's retry is due
        assert process_queued() == ["done"]

    # Then the payment is captured and the refund recorded, once
    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, attempt.amount_captured) == ("captured", 1130)
    assert (intent.status, intent.amount_received, intent.amount_refunded) == ("succeeded", 1130, 300)
    recorded = Refund.objects.get(intent=intent)
    assert (recorded.amount, recorded.status, recorded.reference) == (300, "succeeded", "RFND8BWKT9NWQW82")
    assert ledger_types(intent)[-2:] == ["ChargeCaptured", "RefundSucceeded"]
    assert (
        event_of("REFUND:RFND8BWKT9NWQW82:true").state,
        event_of("REFUND:RFND8BWKT9NWQW82:true").attempts,
    ) == (
        "processed",
        2,
    )


def test_our_own_capture_and_refund_are_confirmed_without_change(gateways, processor, host_client):
    # Given a payment we captured and refunded through our API (Adyen answers "received")
    intent, attempt = adyen_payment(processor, capture_method="manual", answer=authorised())
    processor.add(
        "POST",
        f"{ADYEN_CHECKOUT}/payments/{PSP}/captures",
        json={"status": "received", "pspReference": "CPTR1"},
    )
    processor.add(
        "POST",
        f"{ADYEN_CHECKOUT}/payments/{PSP}/refunds",
        json={"status": "received", "pspReference": "RFND1"},
    )
    payment_capture(intent_id=intent.pk)
    refund = payment_refund(intent_id=intent.pk, amount=400)
    assert (refund.status, refund.reference) == ("succeeded", "RFND1")
    before = ledger_types(intent)

    # When Adyen confirms both
    deliver(
        host_client(HOST),
        adyen_item(
            "CAPTURE", merchantReference=f"{attempt.id}:capture", pspReference="CPTR1", originalReference=PSP
        ),
        adyen_item(
            "REFUND",
            merchantReference=refund.pk,
            pspReference="RFND1",
            originalReference=PSP,
            amount={"currency": "EUR", "value": 400},
        ),
    )
    assert process_queued() == ["done", "done"]

    # Then nothing changes
    intent = reload(intent)
    assert (intent.status, intent.amount_received, intent.amount_refunded) == ("succeeded", 1130, 400)
    assert ledger_types(intent) == before
    assert event_of("REFUND:RFND1:true").result == f"refund {refund.pk} stays succeeded"


def test_a_refund_failing_after_adyen_received_it_is_a_conflict_for_an_operator(
    gateways, processor, host_client
):
    intent, _ = adyen_payment(processor, answer=authorised())
    processor.add(
        "POST",
        f"{ADYEN_CHECKOUT}/payments/{PSP}/refunds",
        json={"status": "received", "pspReference": "RFND1"},
    )
    refund = payment_refund(intent_id=intent.pk, amount=400)

    deliver(
        host_client(HOST),
        adyen_item(
            "REFUND_FAILED",
            merchantReference=refund.pk,
            pspReference="RFND1",
            originalReference=PSP,
            reason="Insufficient balance on payment",
            amount={"currency": "EUR", "value": 400},
        ),
    )
    process_queued()

    event = event_of("REFUND_FAILED:RFND1:true")
    assert event.state == "failed"
    assert event.last_error == (
        f"conflict: the gateway reports refund {refund.pk} failed (REFUND_FAILED: Insufficient balance on "
        "payment), but it is succeeded here"
    )
    refund.refresh_from_db()
    assert refund.status == "succeeded"  # left for an operator: nothing moves backwards by itself


def test_a_failed_capture_leaves_an_authorisation_as_it_is(gateways, processor, host_client):
    intent, attempt = adyen_payment(processor, capture_method="manual", answer=authorised())

    deliver(
        host_client(HOST),
        adyen_item(
            "CAPTURE_FAILED",
            merchantReference=attempt.id,
            pspReference="CPTR2",
            originalReference=PSP,
            reason="Expired",
        ),
    )
    process_queued()

    assert reload(intent).status == "requires_capture"
    assert (
        event_of("CAPTURE_FAILED:CPTR2:true").result
        == f"attempt {attempt.id} stays authorized: capture failed (Expired)"
    )


def test_a_cancellation_voids_an_authorisation(gateways, processor, host_client):
    intent, attempt = adyen_payment(processor, capture_method="manual", answer=authorised())

    deliver(
        host_client(HOST),
        adyen_item("CANCELLATION", merchantReference=attempt.id, pspReference="CNCL1", originalReference=PSP),
    )
    process_queued()

    attempt.refresh_from_db()
    intent = reload(intent)
    assert (attempt.status, intent.status) == ("canceled", "canceled")
    assert ledger_types(intent)[-2:] == ["AuthorizationVoided", "PaymentCanceled"]


def test_another_merchant_accounts_notification_is_ignored(gateways, processor, host_client):
    intent, attempt = adyen_payment(processor)

    deliver(
        host_client(HOST),
        adyen_item(
            "AUTHORISATION", merchantReference=attempt.id, pspReference=PSP, merchantAccountCode="OtherECOM"
        ),
    )
    process_queued()

    assert reload(intent).status == "processing"
    assert (
        event_of(f"AUTHORISATION:{PSP}:true").result
        == f"ignored: for merchant account OtherECOM, not {MERCHANT}"
    )


def test_a_refund_whose_capture_never_comes_is_given_up_for_an_operator(gateways, processor, host_client):
    intent, attempt = adyen_payment(processor, capture_method="manual", answer=authorised())
    deliver(
        host_client(HOST),
        adyen_item("REFUND", merchantReference=attempt.id, pspReference="RFND9", originalReference=PSP),
    )
    event = event_of("REFUND:RFND9:true")
    InboundEvent.objects.filter(pk=event.pk).update(attempts=PROCESS_MAX_ATTEMPTS - 1)  # its retries so far

    assert inbound_event_process(inbound_event_id=event.pk) == "failed"

    event.refresh_from_db()
    assert event.last_error.startswith("gave up waiting: refund RFND9 of attempt")
    assert reload(intent).status == "requires_capture"


def test_a_chargeback_opens_a_dispute_and_its_reversal_wins_it(gateways, processor, host_client):
    from apps.payments.models import Dispute

    intent, attempt = adyen_payment(processor, answer=authorised())
    chargeback = adyen_item(
        "CHARGEBACK",
        merchantReference=attempt.id,
        pspReference="CB1",
        originalReference=PSP,
        amount={"currency": "EUR", "value": 1130},
        reason="Fraudulent",
    )

    deliver(host_client(HOST), chargeback)
    deliver(host_client(HOST), chargeback)  # a redelivery
    process_queued()

    dispute = Dispute.objects.get(intent=intent)
    assert (dispute.amount, dispute.currency, dispute.status, dispute.reason) == (
        1130,
        "EUR",
        "open",
        "Fraudulent",
    )
    assert ledger_types(intent)[-1] == "DisputeOpened"

    deliver(
        host_client(HOST),
        adyen_item(
            "CHARGEBACK_REVERSED", merchantReference=attempt.id, pspReference="CB2", originalReference=PSP
        ),
    )
    process_queued()

    assert Dispute.objects.get(pk=dispute.pk).status == "won"
    assert ledger_types(intent)[-1] == "DisputeWon"
