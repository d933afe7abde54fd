"""Unknown outcomes: an attempt whose gateway answer was lost (or whose process died mid-call),
and an attempt waiting for the customer whose webhook may never come. Workers find out what the
gateway did (retrieve, the same request replayed, or a technical cancel) and apply it;
``payments_reconcile`` finds whatever is stranded."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.payments.gateways.base import GatewayResult, GatewayStatus, Outcome
from apps.payments.locks import lock_attempt
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent
from apps.payments.services.drive import attempt_authorize, attempt_finish, payment_continue
from apps.payments.services.errors import AttemptStillUnknown
from apps.payments.services.late_charges import gateway_voided
from apps.payments.services.operations import payment_operations_reconcile
from apps.payments.services.schedules import (
    CONTINUE_HANDLER,
    REFRESH_HANDLER,
    RESOLVE_BACKOFF_SECONDS,
    RESOLVE_HANDLER,
    attempt_lease,
    next_action_check,
)
from apps.payments.services.setup import gateway_client
from apps.payments.services.truth import ACTION_SETTLED, payment_attempt_apply_gateway_truth

IS, AS = PaymentIntent.Status, PaymentAttempt.Status


def payment_attempt_resolve(*, attempt_id: str) -> None:
    """Idempotent: find out what happened to an attempt whose answer was lost, apply it, and let
    the payment continue. Raises AttemptStillUnknown (the durable task retries with backoff)."""
    attempt = PaymentAttempt.objects.select_related("gateway_account", "intent").get(pk=attempt_id)
    if attempt.status not in (AS.PENDING, AS.UNKNOWN):
        # Resolved already (by an earlier run of this task that died before the payment moved on,
        # or by a webhook): make sure the payment continues.
        payment_continue(intent_id=attempt.intent_id)
        return
    account = attempt.gateway_account
    if attempt.status == AS.PENDING and _in_flight(attempt):
        # Its gateway call may still be running: acting now could close an attempt that is
        # about to be charged. Wait for the lease to pass.
        raise AttemptStillUnknown(
            f"attempt {attempt.id}'s call may still be in flight until {attempt.lease_until}"
        )
    gateway = gateway_client(account)
    truth = gateway.retrieve(attempt_id=attempt.id, reference=attempt.reference or None)
    if truth.status in (GatewayStatus.UNKNOWN, GatewayStatus.ERROR):
        # The gateway has no lookup (Adyen) or could not answer: replay the very same request with
        # the same idempotency key. The processor returns its first answer if it got the request,
        # or processes it now if it never did; either way the charge exists at most once.
        replay = attempt_authorize(gateway, attempt.intent, attempt)
        # Only an answer about this very key settles it. A gateway error on the replay (refused
        # connection, 5xx) says nothing about the original request, so it stays unknown.
        if replay.outcome in (
            Outcome.SUCCEEDED,
            Outcome.REQUIRES_ACTION,
            Outcome.DECLINED_SOFT,
            Outcome.DECLINED_HARD,
        ):
            if attempt_finish(attempt.id, replay) == "failover" or replay.outcome != Outcome.SUCCEEDED:
                payment_continue(intent_id=attempt.intent_id)
            return
        if (
            truth.status == GatewayStatus.ERROR
            or replay.outcome == Outcome.UNKNOWN
            or getattr(gateway, "can_look_up", True)
        ):
            # Nothing was learnt (the lookup's or the replay's answer was lost): a technical
            # cancel now could turn a decline we cannot see into a failover. Ask again later. Only
            # a gateway that has no lookup at all (Adyen) goes on to the technical cancel.
            _still_unknown(attempt, account)
    if truth.status in (GatewayStatus.CAPTURED, GatewayStatus.AUTHORIZED):
        attempt_finish(
            attempt.id,
            GatewayResult(
                Outcome.SUCCEEDED,
                truth.status,
                reference=truth.reference,
                amount_authorized=truth.amount_authorized,
                amount_captured=truth.amount_captured,
                fee=truth.fee,
                message="resolved by retrieve",
                network_transaction_id=truth.network_transaction_id,
                saved=truth.saved,
            ),
        )
    elif truth.status == GatewayStatus.REQUIRES_ACTION:
        # The charge waits for the customer (3-D Secure): so does the payment.
        attempt_finish(
            attempt.id,
            GatewayResult(
                Outcome.REQUIRES_ACTION,
                GatewayStatus.REQUIRES_ACTION,
                reference=truth.reference,
                message=truth.message or "resolved by retrieve: waiting for the customer",
                raw=truth.raw,
            ),
        )
    elif truth.status == GatewayStatus.DECLINED:
        # The issuer answered: a decline, handled by the decline table like any other (a hard
        # decline stops; it is never a gateway error to fail over from).
        outcome = (
            truth.outcome
            if truth.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD)
            else Outcome.DECLINED_SOFT
        )
        attempt_finish(
            attempt.id,
            GatewayResult(
                outcome,
                GatewayStatus.DECLINED,
                reference=truth.reference,
                decline_code=truth.decline_code or "generic_decline",
                advice_code=truth.advice_code,
                message=truth.message or "resolved by retrieve: declined",
            ),
        )
    elif truth.status in (GatewayStatus.NOT_FOUND, GatewayStatus.CANCELED):
        # Nothing was charged. Void by our reference first, so a late charge cannot appear.
        gateway.cancel(attempt_id=attempt.id, reference=None, idempotency_key=f"{attempt.id}:void")
        attempt_finish(
            attempt.id,
            GatewayResult(
                Outcome.GATEWAY_ERROR,
                GatewayStatus.NOT_FOUND,
                message=f"resolved: no charge ({truth.status})",
            ),
        )
    else:
        # The gateway cannot say (e.g. Adyen has no lookup): technically cancel by our reference.
        cancel = gateway.cancel(
            attempt_id=attempt.id,
            reference=attempt.reference or None,
            idempotency_key=f"{attempt.id}:technical-cancel",
        )
        if gateway_voided(cancel):
            attempt_finish(
                attempt.id,
                GatewayResult(
                    Outcome.GATEWAY_ERROR, GatewayStatus.CANCELED, message="resolved by technical cancel"
                ),
            )
        else:
            _still_unknown(attempt, account)
    payment_continue(intent_id=attempt.intent_id)


def payment_drive_on(*, intent_id: str) -> None:
    """Idempotent: what a retry of the request that created or confirmed a payment does before it
    answers. An attempt whose outcome is unknown (its answer was lost, or its process died
    mid-call and its lease has passed) is resolved now, by asking its gateway
    (``payment_attempt_resolve``: a lookup, at most one replay of the same request or a void,
    each a gateway call with its own timeout, no transaction open), then the payment is driven
    on. An attempt whose call may still be in flight, or that its gateway cannot tell about yet,
    is left to its resolver; the payment then stays processing."""
    open_attempts = PaymentAttempt.objects.filter(
        intent_id=intent_id, status__in=(AS.PENDING, AS.UNKNOWN)
    ).order_by("number")
    for attempt_id in open_attempts.values_list("id", flat=True)[:1]:  # at most one can be open
        try:
            payment_attempt_resolve(attempt_id=attempt_id)
        except AttemptStillUnknown:
            return
    payment_continue(intent_id=intent_id)


def _in_flight(attempt: PaymentAttempt) -> bool:
    """May the attempt's gateway call still be running? (Rows from before leases: by age.)"""
    now = timezone.now()
    if attempt.lease_until is not None:
        return attempt.lease_until > now
    return attempt.updated_at > now - attempt_lease()


def _still_unknown(attempt: PaymentAttempt, account: GatewayAccount) -> None:
    count = attempt.resolve_count + 1
    delay = RESOLVE_BACKOFF_SECONDS[min(count, len(RESOLVE_BACKOFF_SECONDS) - 1)]
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        resolve_count=count, next_resolve_at=timezone.now() + timedelta(seconds=delay)
    )
    raise AttemptStillUnknown(f"attempt {attempt.id} is still unknown at {account.name}")


def payments_reconcile() -> int:
    """Idempotent: find attempts stuck unknown, or pending longer than any gateway call can take
    (the process died mid-call), and queue their resolution. Returns how many were queued."""
    now = timezone.now()
    stuck = (
        PaymentAttempt.objects.filter(status=AS.UNKNOWN, next_resolve_at__lte=now)
        | PaymentAttempt.objects.filter(status=AS.PENDING, lease_until__lte=now)
        | PaymentAttempt.objects.filter(
            status=AS.PENDING, lease_until__isnull=True, updated_at__lte=now - attempt_lease()
        )
    )
    queued = 0
    for attempt in stuck[:500]:
        durable_enqueue(
            handler=RESOLVE_HANDLER,
            kwargs={"attempt_id": attempt.id},
            idempotency_key=f"reconcile:{attempt.id}:{attempt.resolve_count}:{attempt.status}",
        )
        queued += 1
    # A processing payment with no attempt open and nothing driving it (the process that was to
    # start its next attempt died after the last one settled): drive it on.
    stranded = (
        PaymentIntent.objects.filter(status=IS.PROCESSING, updated_at__lte=now - attempt_lease())
        .exclude(attempts__status__in=[AS.PENDING, AS.UNKNOWN])
        .values_list("id", "updated_at")
    )
    for intent_id, updated_at in stranded[:500]:
        durable_enqueue(
            handler=CONTINUE_HANDLER,
            kwargs={"intent_id": intent_id},
            idempotency_key=f"continue:{intent_id}:stranded:{updated_at:%Y-%m-%dT%H:%M:%S.%f}",
        )
        queued += 1
    waiting = PaymentAttempt.objects.filter(status=AS.REQUIRES_ACTION, next_resolve_at__lte=now)
    for attempt_id, check_at in waiting.values_list("id", "next_resolve_at")[:500]:
        durable_enqueue(
            handler=REFRESH_HANDLER,
            kwargs={"attempt_id": attempt_id},
            idempotency_key=f"refresh:{attempt_id}:{check_at:%Y-%m-%dT%H:%M:%S.%f}",
        )
        queued += 1
    return queued + payment_operations_reconcile()


def payment_attempt_refresh(*, attempt_id: str) -> str:
    """Idempotent: ask the gateway what became of an attempt waiting for the customer (3-D Secure),
    in case its webhook was lost, and apply the news (captured, authorised, declined, cancelled)
    as the webhook would have. Then schedules the next check (``ACTION_CHECKS``). Returns what it
    did."""
    attempt = PaymentAttempt.objects.select_related("gateway_account").get(pk=attempt_id)
    if attempt.status != AS.REQUIRES_ACTION:
        return f"attempt {attempt.id} is {attempt.status}"
    truth = gateway_client(attempt.gateway_account).retrieve(
        attempt_id=attempt.id, reference=attempt.reference or None
    )
    if truth.status in ACTION_SETTLED:
        return payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=truth)
    with transaction.atomic():
        attempt = lock_attempt(attempt_id)
        if attempt.status == AS.REQUIRES_ACTION:
            # Still waiting (or the gateway could not say): look again later.
            attempt.next_resolve_at = next_action_check(
                attempt.updated_at, timezone.now() + timedelta(seconds=1)
            )
            attempt.save(update_fields=["next_resolve_at"])
    return f"attempt {attempt.id} still waits for the customer ({truth.status})"
