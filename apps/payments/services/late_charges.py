"""Late charges: money a gateway took on an attempt we had closed as "nothing charged" (its answer
came after the lease, or the customer completed 3-D Secure after the payment moved on). Never
dropped, never kept: posted to suspense and reversed automatically."""

from __future__ import annotations

import logging

from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from apps.core.durable import durable_enqueue
from apps.core.ids import new_id
from apps.core.money import format_amount
from apps.payments import events
from apps.payments.gateways.base import GatewayResult, GatewayStatus, Outcome
from apps.payments.locks import lock_late_charge
from apps.payments.models import LateCharge, PaymentAttempt, PaymentIntent
from apps.payments.services.errors import AttemptStillUnknown
from apps.payments.services.ledger_events import record_event
from apps.payments.services.schedules import LATE_CHARGE_REVERSE_HANDLER, RESOLVE_BACKOFF_SECONDS
from apps.payments.services.setup import gateway_client
from apps.payments.statemachine import late_charge_to
from apps.webhooks.outbound import operator_emails

log = logging.getLogger(__package__)  # one logger for the package, as when it was one module


def gateway_voided(result: GatewayResult) -> bool:
    """The gateway confirms the attempt holds no money and never will: cancelled, or none made."""
    return result.outcome == Outcome.SUCCEEDED and result.status in (
        GatewayStatus.CANCELED,
        GatewayStatus.NOT_FOUND,
    )


def gateway_money_taken(result: GatewayResult) -> bool:
    """The gateway says the attempt holds the customer's money (captured or authorised)."""
    return result.outcome == Outcome.SUCCEEDED and result.status in (
        GatewayStatus.CAPTURED,
        GatewayStatus.AUTHORIZED,
    )


def late_charge_found(
    intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult, *, found_by: str
) -> LateCharge:
    """Inside the caller's transaction, with the attempt and its payment locked: record money a
    gateway took on an attempt we had closed, post it (Dr clearing / Cr suspense, and the fee),
    and queue its reversal (``payment_late_charge_reverse``). Idempotent per attempt."""
    existing = LateCharge.objects.filter(attempt_id=attempt.pk).first()
    if existing is not None:
        return existing
    captured = result.status == GatewayStatus.CAPTURED
    amount = (result.amount_captured if captured else result.amount_authorized) or intent.amount
    account = attempt.gateway_account
    late = LateCharge.objects.create(
        id=new_id("lc_"),
        attempt=attempt,
        intent=intent,
        gateway_account=account,
        reference=(result.reference or attempt.reference or "")[:100],
        amount=amount,
        currency=intent.currency,
        captured=captured,
        fee=result.fee if captured else 0,
        found_by=found_by[:200],
    )
    record_event(events.late_charge_found(intent, late))
    durable_enqueue(
        handler=LATE_CHARGE_REVERSE_HANDLER,
        kwargs={"late_charge_id": late.id},
        idempotency_key=f"late-reverse:{late.id}",
        max_attempts=len(RESOLVE_BACKOFF_SECONDS) + 10,
    )
    log.error(
        "late charge on a closed attempt: reversing it",
        extra={"attempt": attempt.id, "payment": intent.id, "amount": amount, "found_by": found_by},
    )
    return late


def payment_late_charge_reverse(*, late_charge_id: str) -> str:
    """Idempotent: void (authorised) or refund (captured) a late charge at its gateway, with no
    transaction open and a key derived from its id, then post the reversal and tell the
    operators. A gateway error or unknown answer raises (the durable task retries); a refusal
    leaves it ``needs_operator`` and tells the operators. Returns its status."""
    late = LateCharge.objects.select_related("gateway_account").get(pk=late_charge_id)
    if late.status != LateCharge.Status.REVERSING:
        return late.status
    gateway = gateway_client(late.gateway_account)
    if late.captured:
        result = gateway.refund(
            attempt_id=late.attempt_id,
            reference=late.reference,
            refund_id=late.id,
            amount=late.amount,
            currency=late.currency,
            idempotency_key=f"{late.id}:refund",
        )
        reversed_ = result.outcome == Outcome.SUCCEEDED
    else:
        result = gateway.cancel(
            attempt_id=late.attempt_id, reference=late.reference or None, idempotency_key=f"{late.id}:void"
        )
        reversed_ = gateway_voided(result)
    if not reversed_ and result.outcome in (Outcome.GATEWAY_ERROR, Outcome.UNKNOWN):
        raise AttemptStillUnknown(f"late charge {late.id}: {result.message or result.outcome}")
    with transaction.atomic():
        late = lock_late_charge(late_charge_id)
        if late.status != LateCharge.Status.REVERSING:
            return late.status
        intent = PaymentIntent.objects.get(pk=late.intent_id)
        late_charge_to(late, LateCharge.Status.REVERSED if reversed_ else LateCharge.Status.NEEDS_OPERATOR)
        late.message = (result.message or "")[:500]
        late.save(update_fields=["status", "message", "updated_at"])
        if reversed_:
            record_event(events.late_charge_reversed(intent, late))
        transaction.on_commit(lambda: late_charge_notify(late_charge_id=late.id))
    return late.status


def late_charge_notify(*, late_charge_id: str) -> int:
    """Email the marketplace's operators about a late charge (reversed, or needing them)."""
    late = LateCharge.objects.select_related("gateway_account").get(pk=late_charge_id)
    recipients = operator_emails()
    if not recipients:
        return 0
    money = format_amount(late.amount, late.currency)
    if late.status == LateCharge.Status.REVERSED:
        subject = f"Late charge of {money} on {late.intent_id} {'refunded' if late.captured else 'voided'}"
    else:
        subject = f"Action needed: late charge of {money} on {late.intent_id} could not be reversed"
    try:
        return send_mail(
            subject=subject[:200],
            message=render_to_string("emails/late_charge.txt", {"late": late, "money": money}),
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:  # the reversal stands whatever the mail server says
        log.exception("could not email operators about late charge %s", late_charge_id)
        return 0
