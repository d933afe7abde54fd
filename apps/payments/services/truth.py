"""Gateway news: what a processor tells us after the fact (its webhooks, or what a lookup
finds), applied forward only, so a duplicate or an older event changes nothing.

The inbound processor news (``apps.payments.news`` and each processor's package) calls the public
names here; they lock what they change (``apps.payments.locks``).
"""

from __future__ import annotations

from django.db import transaction

from apps.core.ids import new_id
from apps.payments import events
from apps.payments.gateways.base import AUTHENTICATION_FAILED, GatewayResult, GatewayStatus
from apps.payments.locks import lock_attempt, lock_refund
from apps.payments.models import PaymentAttempt, PaymentIntent, Refund
from apps.payments.services.drive import attempt_finish, payment_continue
from apps.payments.services.errors import GatewayTruthConflict, GatewayTruthNotYet
from apps.payments.services.late_charges import late_charge_found
from apps.payments.services.ledger_events import record_event
from apps.payments.services.methods import payment_saved_method_keep
from apps.payments.services.schedules import authentication_expired
from apps.payments.services.settlement import capture_record, refund_settle, refund_succeeded_record
from apps.payments.statemachine import attempt_to, intent_to, refund_to

IS, AS = PaymentIntent.Status, PaymentAttempt.Status

# The payment's ``last_error.code`` when its authentication was closed unfinished.
AUTHENTICATION_EXPIRED = "authentication_expired"

# What a gateway may say of an attempt waiting for the customer that settles it (news to apply
# here); anything else and it still waits.
ACTION_SETTLED = (
    GatewayStatus.CAPTURED,
    GatewayStatus.AUTHORIZED,
    GatewayStatus.DECLINED,
    GatewayStatus.CANCELED,
)


def payment_attempt_apply_gateway_truth(*, attempt_id: str, result: GatewayResult) -> str:
    """Idempotent: move an attempt, and its payment, forward to what the gateway says the charge
    is now (``result.status``: AUTHORIZED, CAPTURED, DECLINED, CANCELED or NOT_FOUND), never back.
    News already applied, or older than what we know, changes nothing. Returns what it did.

    A pending or unknown attempt takes the resolver's path (``attempt_finish``); when nothing was
    charged the payment continues at the next gateway. A settled attempt moves on under the
    attempt's and the payment's row locks: an authorisation captured or voided at the gateway, a
    customer action (3-D Secure) completed or abandoned. Raises GatewayTruthConflict, changing
    nothing, when the news contradicts a final state."""
    before = PaymentAttempt.objects.only("status", "intent_id").get(pk=attempt_id)
    if before.status in (AS.PENDING, AS.UNKNOWN) and attempt_finish(attempt_id, result) == "failover":
        payment_continue(intent_id=before.intent_id)
    _attempt_move_forward(attempt_id, result)
    after = PaymentAttempt.objects.select_related("intent").get(pk=attempt_id)
    if after.status == before.status:
        return f"attempt {attempt_id} stays {after.status} (payment {after.intent.status})"
    return f"attempt {attempt_id} {before.status} -> {after.status} (payment {after.intent.status})"


def _attempt_move_forward(attempt_id: str, result: GatewayResult) -> None:
    GS = GatewayStatus
    with transaction.atomic():
        attempt = lock_attempt(attempt_id)  # and its payment
        intent, news, now = attempt.intent, result.status, attempt.status
        if now in (AS.PENDING, AS.UNKNOWN):
            return  # the news was itself inconclusive
        if news == GS.CAPTURED and now == AS.AUTHORIZED:
            _truth_capture(intent, attempt, result)
        elif news in (GS.CAPTURED, GS.AUTHORIZED) and now == AS.REQUIRES_ACTION:
            _truth_action_completed(intent, attempt, result)
        elif news in (GS.CANCELED, GS.NOT_FOUND) and now == AS.AUTHORIZED:
            _truth_void(intent, attempt)
        elif news in (GS.CANCELED, GS.NOT_FOUND, GS.DECLINED) and now == AS.REQUIRES_ACTION:
            _truth_action_failed(intent, attempt, result)
        elif (news in (GS.CAPTURED, GS.AUTHORIZED) and now in (AS.DECLINED, AS.FAILED)) or (
            news == GS.CAPTURED and now == AS.CANCELED
        ):
            # Money taken on an attempt we closed: reversed automatically, never kept.
            late_charge_found(
                intent,
                attempt,
                result,
                found_by=f"{attempt.gateway_account.name} reported it {news} after it was closed ({now})",
            )
        elif news in (GS.CANCELED, GS.NOT_FOUND) and now == AS.CAPTURED:
            raise GatewayTruthConflict(
                f"{attempt.gateway_account.name} reports attempt {attempt.id} {news}, but it is captured here"
            )
        # Anything else is news we already have, or older news (authorised after captured,
        # declined after authorised): nothing to do.


def _truth_capture(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """An authorisation captured at the gateway (outside our API, or our capture's answer lost)."""
    if intent.status != IS.REQUIRES_CAPTURE:
        raise GatewayTruthConflict(
            f"attempt {attempt.id} was captured at the gateway but payment {intent.id} is {intent.status}"
        )
    amount = result.amount_captured or attempt.amount_authorized
    attempt_to(attempt, AS.CAPTURED)
    attempt.amount_captured, attempt.fee = amount, result.fee
    attempt.save(update_fields=["status", "amount_captured", "fee", "updated_at"])
    intent_to(intent, IS.SUCCEEDED)
    intent.amount_received, intent.amount_capturable = amount, 0
    intent.save(update_fields=["status", "amount_received", "amount_capturable", "updated_at"])
    capture_record(intent, attempt, amount, result.fee)


def _truth_action_completed(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """The customer completed the action (3-D Secure) and the gateway authorised or captured."""
    moved_on = PaymentAttempt.objects.filter(intent_id=intent.pk, number__gt=attempt.number).exists()
    if intent.status != IS.REQUIRES_ACTION or moved_on:
        # The payment moved on without this attempt (canceled, or confirmed again elsewhere): the
        # money it took is a late charge, reversed automatically.
        attempt_to(attempt, AS.CANCELED)
        attempt.message = "authenticated after the payment moved on; reversed as a late charge"
        attempt.save(update_fields=["status", "message", "updated_at"])
        late_charge_found(
            intent,
            attempt,
            result,
            found_by=f"authenticated after payment {intent.id} moved on ({intent.status})",
        )
        return
    intent_to(intent, IS.PROCESSING)
    intent.next_action, intent.last_error = {}, {}
    intent.gateway_account = attempt.gateway_account
    # A card saved by the authenticated charge (``setup_future_usage``) becomes the customer's
    # method, as on the direct path (the method locked after the payment and attempt).
    payment_saved_method_keep(intent, attempt.gateway_account, result.saved, result.network_transaction_id)
    attempt.amount_authorized = result.amount_authorized or intent.amount
    attempt.reference = attempt.reference or result.reference or ""
    if result.status == GatewayStatus.CAPTURED:
        attempt_to(attempt, AS.CAPTURED)
        attempt.amount_captured, attempt.fee = result.amount_captured or attempt.amount_authorized, result.fee
        intent_to(intent, IS.SUCCEEDED)
        intent.amount_received = attempt.amount_captured
    else:
        attempt_to(attempt, AS.AUTHORIZED)
        intent_to(intent, IS.REQUIRES_CAPTURE)
        intent.amount_capturable = attempt.amount_authorized
    attempt.save()
    intent.save()
    if attempt.status == AS.CAPTURED:
        capture_record(intent, attempt, attempt.amount_captured, attempt.fee)
    else:
        record_event(events.charge_authorized(intent, attempt))


def _truth_void(intent: PaymentIntent, attempt: PaymentAttempt) -> None:
    """An authorisation voided at the gateway (expired, or cancelled outside our API)."""
    attempt_to(attempt, AS.CANCELED)
    attempt.save(update_fields=["status", "updated_at"])
    record_event(events.authorization_voided(intent, attempt))
    if intent.status == IS.REQUIRES_CAPTURE:
        intent_to(intent, IS.CANCELED)
        intent.amount_capturable = 0
        intent.save(update_fields=["status", "amount_capturable", "updated_at"])
        record_event(events.payment_canceled(intent, "authorization voided at the gateway"))


def _truth_action_failed(intent: PaymentIntent, attempt: PaymentAttempt, result: GatewayResult) -> None:
    """The action (3-D Secure) failed or was abandoned: nothing was charged. The payment fails
    with the reason (``authentication_failed``, or ``card_declined`` when the issuer declined
    after it), so the storefront can confirm it again (e.g. with another card). Never a failover:
    only the customer can authenticate."""
    declined = result.status == GatewayStatus.DECLINED
    attempt_to(attempt, AS.DECLINED if declined else AS.CANCELED)
    attempt.decline_code = (result.decline_code or "")[:80]
    attempt.advice_code = (result.advice_code or "")[:80]
    attempt.message = (result.message or "")[:500]
    attempt.save(update_fields=["status", "decline_code", "advice_code", "message", "updated_at"])
    if declined:
        record_event(events.attempt_declined(intent, attempt))
    else:
        record_event(events.attempt_failed(intent, attempt, canceled=True))
    moved_on = PaymentAttempt.objects.filter(intent_id=intent.pk, number__gt=attempt.number).exists()
    if intent.status == IS.REQUIRES_ACTION and not moved_on:
        intent_to(intent, IS.FAILED)
        intent.next_action = {}
        # The customer failed or abandoned the authentication (or the gateway closed it): they
        # may try again or use another card; the issuer declining after it is a decline.
        failed_authentication = not declined or attempt.decline_code == AUTHENTICATION_FAILED
        code = AUTHENTICATION_FAILED if failed_authentication else "card_declined"
        if not declined and authentication_expired(attempt):
            code = AUTHENTICATION_EXPIRED  # closed at the gateway by payments_authentication_expire
        intent.last_error = {
            "type": "card_error",
            "code": code,
            "decline_code": attempt.decline_code,
            "message": attempt.message,
            "attempt": attempt.id,
        }
        intent.save(update_fields=["status", "next_action", "last_error", "updated_at"])
        record_event(events.payment_failed(intent, attempt=attempt, action="stop"))


def payment_attempt_capture_failed(*, attempt_id: str, message: str = "") -> str:
    """Idempotent: the gateway reports that a capture failed. An attempt still authorised stays so
    (nothing was recorded for the capture). One already recorded captured raises
    GatewayTruthConflict, changing nothing: a captured attempt is final here, so the recorded
    capture must be reversed by an operator (``ledger_reverse``)."""
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status == AS.CAPTURED:
        raise GatewayTruthConflict(
            f"the gateway reports the capture of attempt {attempt.id} failed ({message or 'no reason'}), "
            "but it was recorded as captured"
        )
    return f"attempt {attempt.id} stays {attempt.status}: capture failed ({message or 'no reason'})"


def payment_refund_apply_gateway_truth(
    *, refund_id: str, succeeded: bool, reference: str = "", message: str = ""
) -> str:
    """Idempotent: settle a pending refund as the gateway reports it (its answer was lost, or the
    gateway confirms asynchronously). A settled refund is left alone; news contradicting it
    raises GatewayTruthConflict, changing nothing. Locks the payment, then the refund (as
    ``refund_execute``)."""
    with transaction.atomic():
        intent, refund = lock_refund(refund_id)
        if refund.status == Refund.Status.PENDING:
            refund_settle(
                intent, refund, succeeded=succeeded, reference=refund.reference or reference, message=message
            )
            return f"refund {refund.id} pending -> {refund.status}"
        if (refund.status == Refund.Status.SUCCEEDED) == succeeded:
            return f"refund {refund.id} stays {refund.status}"
    raise GatewayTruthConflict(
        f"the gateway reports refund {refund.id} {'succeeded' if succeeded else 'failed'}"
        f"{f' ({message})' if message else ''}, but it is {refund.status} here"
    )


def payment_refund_record_external(
    *,
    attempt_id: str,
    reference: str,
    amount: int | None = None,
    refunded_total: int | None = None,
    reason: str = "",
) -> str:
    """Idempotent by ``reference`` (the gateway's id for the refund): record a refund made at the
    gateway outside this platform (its dashboard). Give its ``amount``, or the gateway's running
    ``refunded_total`` for the charge: then what exceeds the refunds known here (pending or not) is
    recorded, worked out under the payment's lock, and an older, smaller total records nothing.
    Raises GatewayTruthNotYet while the capture it refunds is not recorded here,
    GatewayTruthConflict when it is more than is left to refund; nothing is changed when it raises."""
    with transaction.atomic():
        attempt = lock_attempt(attempt_id)  # and its payment
        intent = attempt.intent
        if Refund.objects.filter(attempt_id=attempt.pk, reference=reference).exists():
            return f"refund {reference} already recorded"
        if refunded_total is not None:
            amount = refunded_total - intent.amount_refunded
            if amount <= 0:
                return f"refunds of attempt {attempt.id} already recorded ({intent.amount_refunded})"
        if amount is None:
            raise ValueError("give amount or refunded_total")
        if attempt.status in (AS.PENDING, AS.UNKNOWN, AS.AUTHORIZED, AS.REQUIRES_ACTION):
            raise GatewayTruthNotYet(
                f"refund {reference} of attempt {attempt.id}, which is {attempt.status} here: "
                "waiting for its capture"
            )
        remaining = intent.amount_received - intent.amount_refunded
        if attempt.status != AS.CAPTURED or intent.status != IS.SUCCEEDED or not 0 < amount <= remaining:
            raise GatewayTruthConflict(
                f"the gateway reports a refund of {amount} on attempt {attempt.id} ({attempt.status}); "
                f"{remaining} is left to refund on payment {intent.id} ({intent.status})"
            )
        refund = Refund(
            id=new_id("re_"),
            intent=intent,
            attempt=attempt,
            amount=amount,
            currency=intent.currency,
            reason=(reason or "refunded at the gateway")[:200],
            reference=reference[:100],
        )
        refund_to(refund, Refund.Status.SUCCEEDED)
        refund.save(force_insert=True)
        intent.amount_refunded += amount
        intent.save(update_fields=["amount_refunded", "updated_at"])
        refund_succeeded_record(intent, refund)
    return f"refund {refund.id} of {amount} recorded (made at the gateway as {reference})"
