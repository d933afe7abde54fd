"""Capture, cancel and refund.

Each runs in three steps and none holds a transaction across the processor call: (1) under the
payment's row lock, check the request and record it (the attempt's ``pending_operation``, or a
pending Refund with its amount reserved) together with the durable task that finishes it if this
process dies, and commit; (2) call the gateway with an idempotency key derived from our ids
(``<attempt>:capture``, ``<attempt>:cancel``, the refund id); (3) apply the answer under the lock,
forward only. An answer that settles nothing (timeout, 5xx, outage) leaves the request pending:
the durable task finds out by retrieving, or by sending the same request with the same key. It
is never taken for a refusal; only a definite refusal is reported as one.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.db.models.fields.json import KT
from django.utils import timezone

from apps.core.durable import durable_enqueue
from apps.core.ids import new_id
from apps.core.models import DurableTask
from apps.core.recovery import recovery_point
from apps.payments import events
from apps.payments.gateways.base import GatewayResult, GatewayStatus, Outcome
from apps.payments.locks import lock_attempt, lock_attempts, lock_intent, lock_refund
from apps.payments.models import PaymentAttempt, PaymentIntent, Refund
from apps.payments.services.errors import OperationStillPending, PaymentError
from apps.payments.services.ledger_events import record_event
from apps.payments.services.schedules import (
    CANCEL_HANDLER,
    CAPTURE_HANDLER,
    OPERATION_ALERT_AFTER,
    OPERATION_LEASE,
    OPERATION_MAX_ATTEMPTS,
    OPERATION_STRANDED_AFTER,
    REFUND_HANDLER,
)
from apps.payments.services.settlement import capture_record, refund_settle
from apps.payments.services.setup import gateway_call, gateway_client
from apps.payments.services.truth import payment_attempt_apply_gateway_truth
from apps.payments.statemachine import attempt_to, intent_to

log = logging.getLogger(__package__)  # one logger for the package, as when it was one module
IS, AS = PaymentIntent.Status, PaymentAttempt.Status

_LIVE = (DurableTask.State.PENDING, DurableTask.State.RUNNING)
# A processor honours an idempotency key this long at least (Stripe 24 h, Adyen 7 days): a refund
# it cannot look up is never sent again after that, since a replay could refund twice.
REFUND_REPLAY_WINDOW = timedelta(hours=24)


def _operation_key(kind: str, object_id: str) -> str:
    """A durable task's key: one task per request (a refused capture may be asked again)."""
    return f"{kind}:{object_id}:{secrets.token_hex(4)}"


def _unsettled(result: GatewayResult) -> bool:
    """The answer says nothing definite: the request may or may not have been acted on (unknown),
    or the processor did not act this time (outage, 5xx, 429) and may later."""
    return result.outcome == Outcome.UNKNOWN or (
        result.outcome == Outcome.GATEWAY_ERROR
        and result.status in (GatewayStatus.ERROR, GatewayStatus.UNKNOWN)
    )


def _capture_verdict(result: GatewayResult) -> str:
    """ "captured", "pending" or "refused" for a capture's answer (or the charge's truth)."""
    if _unsettled(result):
        return "pending"
    if result.status == GatewayStatus.CAPTURED:
        return "captured"  # also a refusal because it is captured already (Stripe's state error)
    if result.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND):
        return "refused"  # voided (or gone) at the gateway: nothing left to capture
    if result.outcome == Outcome.SUCCEEDED:
        return "pending"  # an answer that is no capture (still authorised): ask again
    return "refused"


def _cancel_verdict(result: GatewayResult) -> str:
    """ "canceled", "pending" or "refused" for a cancel's answer (or the charge's truth). Adyen
    answers "received" (SUCCEEDED, status UNKNOWN): taken as voided, its webhook corrects it."""
    if _unsettled(result):
        return "pending"
    if result.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND):
        return "canceled"
    if result.outcome == Outcome.SUCCEEDED and result.status != GatewayStatus.CAPTURED:
        return "canceled"
    return "refused"


def _refund_verdict(result: GatewayResult) -> str:
    """ "succeeded", "pending" or "failed" for a refund's answer. Stripe reports a refund that
    failed as GATEWAY_ERROR with the refund itself: that is definite."""
    if _unsettled(result) or result.outcome == Outcome.REQUIRES_ACTION:
        return "pending"
    if result.outcome == Outcome.SUCCEEDED:
        return "succeeded"
    return "failed"


def _operation_clear(attempt: PaymentAttempt) -> list[str]:
    attempt.pending_operation, attempt.pending_amount, attempt.pending_since = "", 0, None
    return ["pending_operation", "pending_amount", "pending_since"]


def _refuse_if_operation_in_flight(intent: PaymentIntent, attempts: list[PaymentAttempt]) -> None:
    busy = [a for a in attempts if a.pending_operation]
    if busy:
        raise PaymentError(
            f"payment {intent.id} has a {busy[0].pending_operation} in progress at its gateway; "
            "try again when it has settled"
        )


def payment_capture(*, intent_id: str, amount: int | None = None) -> PaymentIntent:
    """Capture an authorised payment, fully or partly (the rest is released).

    The request is recorded on the authorised attempt (``pending_operation="capture"``) with a
    durable task that finishes it, and committed; then the gateway is called with no transaction
    open (key ``<attempt>:capture``) and its answer applied under the payment's lock. Returns the
    payment ``succeeded`` once captured. When the gateway's answer is lost or it cannot answer
    (timeout, 5xx, outage) the payment is returned as it is, still ``requires_capture`` with its
    attempt's capture pending: the public state changes only when the money has moved, and the
    ``payment.succeeded`` event announces it when ``payment_capture_resolve`` has found out.
    Raises PaymentError on a bad state or amount (``payment_intent_unexpected_state`` too while a
    capture or cancel of the payment is in flight: never a second capture), or ``capture_failed``
    when the gateway definitely refuses it; then nothing was captured."""
    with transaction.atomic():
        intent = lock_intent(intent_id)
        if intent.status != IS.REQUIRES_CAPTURE:
            raise PaymentError(
                f"payment {intent.id} is {intent.status}; only requires_capture can be captured"
            )
        attempts = lock_attempts(intent)
        _refuse_if_operation_in_flight(intent, attempts)
        amount = intent.amount_capturable if amount is None else amount
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int)
            or not 0 < amount <= intent.amount_capturable
        ):
            raise PaymentError(
                f"amount must be between 1 and {intent.amount_capturable}",
                code="parameter_invalid",
                param="amount",
            )
        attempt = next((a for a in attempts if a.status == AS.AUTHORIZED), None)
        if attempt is None:
            raise PaymentError(f"payment {intent.id} has no authorisation to capture")
        attempt.pending_operation, attempt.pending_amount = "capture", amount
        attempt.pending_since = timezone.now()
        attempt.save(update_fields=["pending_operation", "pending_amount", "pending_since", "updated_at"])
        durable_enqueue(
            handler=CAPTURE_HANDLER,
            kwargs={"attempt_id": attempt.id},
            idempotency_key=_operation_key("capture", attempt.id),
            run_at=attempt.pending_since + OPERATION_LEASE,
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    result = _gateway_capture(attempt, intent.currency)
    intent, verdict = _capture_apply(attempt.id, result)
    if verdict == "refused":
        raise PaymentError(f"the gateway refused the capture: {result.message}", code="capture_failed")
    return intent


def _gateway_capture(attempt: PaymentAttempt, currency: str) -> GatewayResult:
    return gateway_call(
        attempt.gateway_account,
        lambda gateway: gateway.capture(
            attempt_id=attempt.id,
            reference=attempt.reference,
            amount=attempt.pending_amount,
            currency=currency,
            idempotency_key=f"{attempt.id}:capture",
        ),
        operation="capture",
        about={"attempt": attempt.id},
    )[0]


def _operation_apply(
    attempt_id: str,
    operation: str,
    verdict: str,
    settle: Callable[[PaymentAttempt, PaymentIntent, list[str]], str],
) -> tuple[PaymentIntent, str]:
    """Apply a gateway's answer, judged ``verdict``, to the attempt's pending ``operation``
    (capture, cancel), under the payment's lock. Idempotent: once the operation is settled (by
    the request or by its durable task, whichever comes first) later answers change nothing
    ("settled"), and a "pending" verdict changes nothing yet. Otherwise the pending operation is
    cleared and ``settle(attempt, intent, fields)`` applies the verdict, saving the cleared
    ``fields`` with the attempt, and says what it came to. Returns the payment and that."""
    with transaction.atomic():
        attempt = lock_attempt(attempt_id)  # and its payment
        intent = attempt.intent
        if attempt.pending_operation != operation:
            return intent, "settled"
        if verdict == "pending":
            return intent, verdict
        return intent, settle(attempt, intent, _operation_clear(attempt))


def _capture_apply(attempt_id: str, result: GatewayResult) -> tuple[PaymentIntent, str]:
    """Apply a capture's answer (or the charge's truth) to a pending capture
    (``_operation_apply``). Returns the payment and the verdict."""
    verdict = _capture_verdict(result)

    def settle(attempt: PaymentAttempt, intent: PaymentIntent, fields: list[str]) -> str:
        if attempt.status != AS.AUTHORIZED or intent.status != IS.REQUIRES_CAPTURE:
            # Gateway news got here first (a capture or void reported by webhook).
            if verdict == "captured" and attempt.status != AS.CAPTURED:
                log.error(
                    "capture answered captured for an attempt that is %s here",
                    attempt.status,
                    extra={"attempt": attempt.id},
                )
            attempt.save(update_fields=[*fields, "updated_at"])
            return "settled"
        if verdict == "captured":
            amount = result.amount_captured or attempt.pending_amount
            attempt_to(attempt, AS.CAPTURED)
            attempt.amount_captured, attempt.fee = amount, result.fee
            attempt.save(update_fields=["status", "amount_captured", "fee", *fields, "updated_at"])
            intent_to(intent, IS.SUCCEEDED)
            intent.amount_received, intent.amount_capturable = amount, 0
            intent.last_error = {}
            intent.save(
                update_fields=["status", "amount_received", "amount_capturable", "last_error", "updated_at"]
            )
            capture_record(intent, attempt, amount, result.fee)
        else:
            attempt.message = (result.message or "")[:500]
            attempt.save(update_fields=["message", *fields, "updated_at"])
        return verdict

    return _operation_apply(attempt_id, "capture", verdict, settle)


def payment_capture_resolve(*, attempt_id: str) -> None:
    """Idempotent (the durable task of every capture): finish a pending capture. Asks the gateway
    what the charge is now (``retrieve``): captured settles it; still authorised, or no answer
    (Adyen has no lookup), sends the same capture again with the same key. A definite refusal
    found here clears the pending capture and is kept in the payment's ``last_error``. Raises
    OperationStillPending (the durable runner retries with backoff) while the gateway cannot say."""
    attempt = PaymentAttempt.objects.select_related("gateway_account", "intent").get(pk=attempt_id)
    if attempt.pending_operation != "capture":
        return
    gateway = gateway_client(attempt.gateway_account)
    truth = gateway.retrieve(attempt_id=attempt.id, reference=attempt.reference or None)
    if truth.status == GatewayStatus.CAPTURED and truth.outcome == Outcome.SUCCEEDED:
        result = truth
    elif truth.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND, GatewayStatus.DECLINED):
        result = truth  # nothing left to capture
    else:
        result = _gateway_capture(attempt, attempt.intent.currency)
    intent, verdict = _capture_apply(attempt.id, result)
    if verdict == "pending":
        raise OperationStillPending(
            f"the capture of attempt {attempt.id} is still unsettled: {result.message}"
        )
    if verdict == "refused" and result is truth:
        # The authorisation was voided at the gateway (expired, or a cancel whose answer was
        # lost): the payment is canceled, as its webhook would say.
        payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=truth)
        return
    if verdict == "refused":
        log.warning("capture refused after it was accepted", extra={"attempt": attempt.id})
        with transaction.atomic():
            intent = lock_intent(intent.pk)
            if intent.status == IS.REQUIRES_CAPTURE:
                intent.last_error = {
                    "type": "api_error",
                    "code": "capture_failed",
                    "message": f"the gateway refused the capture: {result.message}"[:500],
                    "attempt": attempt.id,
                }
                intent.save(update_fields=["last_error", "updated_at"])


def payment_cancel(*, intent_id: str, reason: str = "") -> PaymentIntent:
    """Cancel a payment that has not been captured, voiding its open authorisations. Idempotent.

    A payment with nothing open at a gateway is canceled at once. Otherwise each open attempt is
    marked ``pending_operation="cancel"`` with a durable task that finishes the cancel, committed;
    the gateways are called with no transaction open (key ``<attempt>:cancel``); each answer is
    applied under the payment's lock, and the payment is ``canceled`` when the last is voided.
    When a gateway's answer is lost or it cannot answer, the payment is returned as it is (e.g.
    ``requires_capture``) with the cancel pending; ``payment_cancel_resolve`` finishes it and the
    ``payment.canceled`` event announces it. Asking again while it is pending returns the payment
    as it is. Raises PaymentError on a bad state (``payment_intent_unexpected_state`` too while a
    capture is in flight) or ``cancel_failed`` when a gateway definitely refuses (e.g. captured)."""
    with transaction.atomic():
        intent = lock_intent(intent_id)
        if intent.status == IS.CANCELED:
            return intent
        if intent.status not in (
            IS.REQUIRES_CONFIRMATION,
            IS.REQUIRES_ACTION,
            IS.REQUIRES_CAPTURE,
            IS.FAILED,
        ):
            raise PaymentError(f"payment {intent.id} is {intent.status}; it cannot be canceled")
        attempts = lock_attempts(intent)
        if {a.pending_operation for a in attempts if a.pending_operation} == {"cancel"}:
            return intent  # already being canceled
        _refuse_if_operation_in_flight(intent, attempts)
        open_ = [a for a in attempts if a.status in (AS.AUTHORIZED, AS.REQUIRES_ACTION)]
        if not open_:
            _cancel_record(intent, reason)
            return intent
        now = timezone.now()
        for attempt in open_:
            attempt.pending_operation, attempt.pending_since = "cancel", now
            attempt.save(update_fields=["pending_operation", "pending_since", "updated_at"])
        durable_enqueue(
            handler=CANCEL_HANDLER,
            kwargs={"intent_id": intent.id, "reason": reason},
            idempotency_key=_operation_key("cancel", intent.id),
            run_at=now + OPERATION_LEASE,
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    for attempt in open_:
        result = _gateway_cancel(attempt)
        intent, verdict = _cancel_apply(attempt.id, result, reason=reason)
        if verdict == "refused":
            raise PaymentError(
                f"the gateway refused the cancellation: {result.message}", code="cancel_failed"
            )
    return intent


def _gateway_cancel(attempt: PaymentAttempt) -> GatewayResult:
    return gateway_call(
        attempt.gateway_account,
        lambda gateway: gateway.cancel(
            attempt_id=attempt.id,
            reference=attempt.reference or None,
            idempotency_key=f"{attempt.id}:cancel",
        ),
        operation="cancel",
        about={"attempt": attempt.id},
    )[0]


def _cancel_record(intent: PaymentIntent, reason: str) -> None:
    intent_to(intent, IS.CANCELED)
    intent.amount_capturable = 0
    intent.save(update_fields=["status", "amount_capturable", "updated_at"])
    record_event(events.payment_canceled(intent, reason))


def _cancel_apply(attempt_id: str, result: GatewayResult, *, reason: str) -> tuple[PaymentIntent, str]:
    """Apply a cancel's answer (or the charge's truth) to a pending cancel
    (``_operation_apply``); the payment is canceled with its last pending cancel."""
    verdict = _cancel_verdict(result)

    def settle(attempt: PaymentAttempt, intent: PaymentIntent, fields: list[str]) -> str:
        if verdict == "canceled" and attempt.status in (AS.AUTHORIZED, AS.REQUIRES_ACTION):
            attempt_to(attempt, AS.CANCELED)
            attempt.save(update_fields=["status", *fields, "updated_at"])
            record_event(events.authorization_voided(intent, attempt))
            others = PaymentAttempt.objects.filter(intent_id=intent.pk, pending_operation="cancel")
            if intent.status not in (IS.CANCELED, IS.SUCCEEDED, IS.PROCESSING) and not others.exists():
                _cancel_record(intent, reason)
            return verdict
        if verdict == "refused":
            attempt.message = (result.message or "")[:500]
            fields.append("message")
        attempt.save(update_fields=[*fields, "updated_at"])
        return "settled" if verdict == "canceled" else verdict  # canceled: gateway news got here first

    return _operation_apply(attempt_id, "cancel", verdict, settle)


def payment_cancel_resolve(*, intent_id: str, reason: str = "") -> None:
    """Idempotent (the durable task of every cancel): finish the payment's pending cancels. Asks
    the gateway what each charge is now (``retrieve``): voided or absent settles it; still open,
    or no answer, sends the same cancel again with the same key. A charge found captured refuses
    the cancel and the capture is recorded as gateway news. Raises OperationStillPending (the
    durable runner retries with backoff) while a gateway cannot say."""
    unsettled = []
    for attempt in PaymentAttempt.objects.select_related("gateway_account").filter(
        intent_id=intent_id, pending_operation="cancel"
    ):
        truth = gateway_client(attempt.gateway_account).retrieve(
            attempt_id=attempt.id, reference=attempt.reference or None
        )
        if truth.status in (GatewayStatus.CANCELED, GatewayStatus.NOT_FOUND) and not _unsettled(truth):
            result = GatewayResult(Outcome.SUCCEEDED, truth.status, message="resolved by retrieve")
        elif truth.status == GatewayStatus.CAPTURED and truth.outcome == Outcome.SUCCEEDED:
            result = truth
        else:
            result = _gateway_cancel(attempt)
        _, verdict = _cancel_apply(attempt.id, result, reason=reason)
        if verdict == "pending":
            unsettled.append(attempt.id)
        elif verdict == "refused" and result.status == GatewayStatus.CAPTURED:
            log.warning("cancel refused: the charge was captured", extra={"attempt": attempt.id})
            if result.outcome == Outcome.SUCCEEDED:
                payment_attempt_apply_gateway_truth(attempt_id=attempt.id, result=result)
    if unsettled:
        raise OperationStillPending(f"the cancel of {', '.join(unsettled)} is still unsettled")


# Why a refund is asked for (Stripe's reasons); empty when not said. Anything else is refused.
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def payment_refund(*, intent_id: str, amount: int | None = None, reason: str = "") -> Refund:
    """Refund (part of) a captured payment at the gateway that took it. The amount is reserved on
    the payment under a row lock first, so concurrent refunds can never exceed what was received.

    Durable from the moment it is accepted: the pending Refund, its reservation and the durable
    task that finishes it (``refund_execute``) are committed together; then it is sent at once
    (key: the refund id). Returns the refund ``succeeded``, ``failed`` (refused: the reservation
    is released), or ``pending`` when the gateway's answer was lost or it could not answer: the
    durable task finishes it, and the reservation is kept until it is final. A ``reason`` not in
    ``REFUND_REASONS`` is 400 ``parameter_invalid``."""
    if reason and reason not in REFUND_REASONS:
        raise PaymentError(
            f"reason must be one of {', '.join(REFUND_REASONS)} (or left out), not {reason[:40]!r}",
            code="parameter_invalid",
            param="reason",
        )
    with transaction.atomic():
        intent = lock_intent(intent_id)
        if intent.status != IS.SUCCEEDED:
            raise PaymentError(
                f"payment {intent.id} is {intent.status}; only succeeded payments can be refunded"
            )
        remaining = intent.amount_received - intent.amount_refunded
        amount = remaining if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= remaining:
            raise PaymentError(
                f"amount must be between 1 and {remaining} (what is left to refund)",
                code="parameter_invalid" if remaining else "charge_already_refunded",
                param="amount",
            )
        attempt = intent.attempts.get(status=AS.CAPTURED)
        refund = Refund.objects.create(
            id=new_id("re_"),
            intent=intent,
            attempt=attempt,
            amount=amount,
            currency=intent.currency,
            reason=reason,
        )
        intent.amount_refunded += amount
        intent.save(update_fields=["amount_refunded", "updated_at"])
        recovery_point("refund", refund.id)
        durable_enqueue(
            handler=REFUND_HANDLER,
            kwargs={"refund_id": refund.id},
            idempotency_key=f"refund:{refund.id}",
            run_at=timezone.now() + OPERATION_LEASE,
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    return _refund_apply(refund.id, _gateway_refund(refund))[0]


def _gateway_refund(refund: Refund) -> GatewayResult:
    return gateway_call(
        refund.attempt.gateway_account,
        lambda gateway: gateway.refund(
            attempt_id=refund.attempt_id,
            reference=refund.attempt.reference,
            refund_id=refund.id,
            amount=refund.amount,
            currency=refund.currency,
            idempotency_key=refund.id,
        ),
        operation="refund",
        about={"refund": refund.id},
    )[0]


def refund_execute(*, refund_id: str) -> Refund:
    """Idempotent (the durable task of every refund): finish a pending refund. Where the adapter
    can find a refund by our id (``RefundLookup``) it is asked first: a refund found settles it,
    one certainly absent is sent; otherwise it is sent with the same key (the refund id), but only
    within ``REFUND_REPLAY_WINDOW`` of its creation. Raises
    OperationStillPending on an error or unknown answer, so the durable runner retries with
    backoff; the refund stays pending, its amount reserved, until it is final (after the retries,
    ``payments_reconcile`` queues it again)."""
    refund = Refund.objects.select_related("attempt__gateway_account", "intent").get(pk=refund_id)
    if refund.status != Refund.Status.PENDING:
        return refund
    account = refund.attempt.gateway_account
    lookup = getattr(gateway_client(account), "refund_retrieve", None)
    if lookup is None and refund.created_at < timezone.now() - REFUND_REPLAY_WINDOW:
        log.error("refund pending past the idempotency window", extra={"refund": refund.id})
        raise OperationStillPending(
            f"refund {refund.id} is older than {account.name}'s idempotency window and cannot be "
            "looked up: not sent again (it could refund twice); its webhook or an operator settles it"
        )
    found = None
    if lookup is not None:
        found = lookup(attempt_id=refund.attempt_id, reference=refund.attempt.reference, refund_id=refund.id)
        if found.status != GatewayStatus.NOT_FOUND and _refund_verdict(found) == "pending":
            raise OperationStillPending(f"refund {refund.id}: the gateway cannot say yet ({found.message})")
    result = (
        found if found is not None and found.status != GatewayStatus.NOT_FOUND else _gateway_refund(refund)
    )
    refund, verdict = _refund_apply(refund.id, result)
    if verdict == "pending":
        raise OperationStillPending(f"refund {refund.id} is still unsettled: {result.message}")
    return refund


def _refund_apply(refund_id: str, result: GatewayResult) -> tuple[Refund, str]:
    """Apply a refund's answer under the payment's and the refund's locks. Idempotent: a refund
    already final is left alone. Returns it and the verdict (``pending``: nothing written)."""
    with transaction.atomic():
        intent, refund = lock_refund(refund_id)
        if refund.status != Refund.Status.PENDING:
            return refund, "settled"
        verdict = _refund_verdict(result)
        if verdict in ("succeeded", "failed"):
            refund_settle(
                intent,
                refund,
                succeeded=verdict == "succeeded",
                reference=result.reference or "",
                message=result.message or "",
            )
    return refund, verdict


def payment_operations_reconcile() -> int:
    """Idempotent: queue again the stranded work of captures, cancels and refunds: pending for
    longer than ``OPERATION_STRANDED_AFTER`` with no live durable task (its retries exhausted,
    or a row from before refunds had one). Logs an error for the operator for each one pending
    longer than ``OPERATION_ALERT_AFTER``. Returns how many were queued."""
    now = timezone.now()
    stale = now - OPERATION_STRANDED_AFTER
    live = DurableTask.objects.filter(state__in=_LIVE)
    refunds = Refund.objects.filter(status=Refund.Status.PENDING, created_at__lte=stale).exclude(
        Exists(
            live.filter(handler=REFUND_HANDLER)
            .annotate(ref=KT("kwargs__refund_id"))
            .filter(ref=OuterRef("pk"))
        )
    )
    captures = PaymentAttempt.objects.filter(pending_operation="capture", pending_since__lte=stale).exclude(
        Exists(
            live.filter(handler=CAPTURE_HANDLER)
            .annotate(ref=KT("kwargs__attempt_id"))
            .filter(ref=OuterRef("pk"))
        )
    )
    cancels = (
        PaymentAttempt.objects.filter(pending_operation="cancel", pending_since__lte=stale)
        .exclude(
            Exists(
                live.filter(handler=CANCEL_HANDLER)
                .annotate(ref=KT("kwargs__intent_id"))
                .filter(ref=OuterRef("intent_id"))
            )
        )
        .order_by("intent_id")
        .distinct("intent_id")
    )
    work = [
        *((REFUND_HANDLER, "refund", r.pk, {"refund_id": r.pk}, r.created_at) for r in refunds[:500]),
        *((CAPTURE_HANDLER, "capture", a.pk, {"attempt_id": a.pk}, a.pending_since) for a in captures[:500]),
        *(
            (CANCEL_HANDLER, "cancel", a.intent_id, {"intent_id": a.intent_id}, a.pending_since)
            for a in cancels[:500]
        ),
    ]
    for handler, kind, object_id, kwargs, since in work:
        if since is not None and since <= now - OPERATION_ALERT_AFTER:
            log.error(
                "%s %s has been pending at its gateway since %s: an operator must look",
                kind,
                object_id,
                since.isoformat(),
                extra={"operation": kind, "object": object_id},
            )
        durable_enqueue(
            handler=handler,
            kwargs=kwargs,
            idempotency_key=_operation_key(kind, object_id),
            max_attempts=OPERATION_MAX_ATTEMPTS,
        )
    return len(work)
