"""Renewals and dunning: charging invoices through the payment mesh.

The database is the source of truth: a subscription is due when ``current_period_end <= now``,
an invoice when ``next_attempt_at <= now``. ``billing_run`` (the per-tenant periodic job) renews
what is due and makes the due invoice attempts; it is safe to run twice at once:

- A renewal locks its subscription (``FOR UPDATE SKIP LOCKED``: a second runner takes another one)
  and writes the invoice, unique per (subscription, period start), in the same transaction that
  advances the period. A period is invoiced at most once.
- An invoice has exactly one payment (created with its first attempt); each attempt is a confirm
  of that payment, so the payment's attempts ``pay_x_1``, ``pay_x_2``... are the deterministic keys
  the gateways see, and a succeeded payment cannot be confirmed again: an invoice is charged at
  most once. An attempt is claimed (``InvoiceAttempt`` unique per invoice and number, the invoice
  leased by moving ``next_attempt_at``) in a short transaction, the gateway is called with no
  transaction open, and the outcome is settled in another. A crash in between leaves the attempt
  ``processing``; when the lease ends the next run resumes it from what the payment says.

Every invoice payment is a merchant-initiated charge (``off_session``, ``recurring``): a method of
ours carries the network transaction id of its first customer-initiated charge to whichever
gateway charges it. A card whose issuer wants the customer to authenticate leaves the payment in
``requires_action`` (an attempt failed with ``authentication_required``, retried on the schedule:
the payment is confirmed again from there).

Dunning follows the marketplace's ``DunningPolicy`` by the schedule in ``dunning`` (its one home):
attempt n+1 on day ``schedule_days[n-1]`` after the first, not sooner than ``advice_wait_hours``
after ``try_again_later`` (or the decline table's "retry later"), no automatic retries after
``do_not_try_again`` (or the table's "stop") until the customer gives a new card, and the final
action when attempts or the window run out. Each retry is routed by the mesh afresh, so a soft
decline at one gateway can be approved at another.

What a payment's state means for an attempt (``attempt_settlement``) and what follows a failure
(``dunning.after_failure``) are computed first, with no database access, then applied.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.billing import amounts, dunning
from apps.billing.errors import BillingError
from apps.billing.invoices import dunning_policy, invoice_build, invoice_publish
from apps.billing.locks import invoice_attempt_lock, invoice_due_claim, subscription_due_claim
from apps.billing.models import DunningPolicy, Invoice, InvoiceAttempt, Subscription
from apps.billing.states import invoice_attempt_to, invoice_to, subscription_to
from apps.billing.subscriptions import subscription_end, subscription_publish, subscription_update
from apps.core.durable import durable_enqueue
from apps.customers.models import Customer
from apps.payments.models import PaymentAttempt, PaymentIntent
from apps.payments.services import PaymentError, payment_confirm, payment_intent_create

log = logging.getLogger(__name__)
SS, IS, AS = Subscription.Status, Invoice.Status, InvoiceAttempt.Status
LEASE = timedelta(minutes=10)  # an attempt not settled by then is resumed by the next run
RECHECK = timedelta(minutes=5)  # a payment still processing (unknown outcome) is looked at again
BATCH = 200


@dataclass
class RunReport:
    renewed: int = 0
    ended: int = 0
    attempts: int = 0
    paid: int = 0
    failed: int = 0
    finalized: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def billing_run(*, now: datetime | None = None, limit: int | None = None) -> RunReport:
    """Idempotent and safe to run concurrently: renew every due subscription, then make every due
    invoice attempt (each once), until nothing is due at ``now``."""
    now = now or timezone.now()
    report = RunReport()
    while limit is None or report.renewed + report.ended < limit:
        if not renewal_run_one(now=now, report=report):
            break
    while limit is None or report.attempts + report.finalized < limit:
        if not invoice_attempt_run_one(now=now, report=report):
            break
    return report


# --------------------------------------------------------------------------- renewals


def renewal_run_one(*, now: datetime, report: RunReport | None = None) -> bool:
    """Renew (or end) one due subscription, skipping any another runner holds. False when none
    is due. Renewing a trial starts the paid period at the trial's end."""
    report = report or RunReport()
    with transaction.atomic():
        sub = subscription_due_claim(now=now)
        if sub is None:
            return False
        if sub.cancel_at_period_end:
            subscription_end(sub, sub.current_period_end)
            sub.save()
            subscription_publish(sub)
            report.ended += 1
            return True
        start = sub.current_period_end
        end = amounts.period_end_after(
            sub.billing_cycle_anchor, start, interval=sub.price.interval, count=sub.price.interval_count
        )
        if sub.status == SS.TRIALING:
            subscription_to(sub, SS.ACTIVE)
        sub.current_period_start, sub.current_period_end = start, end
        sub.save()
        try:
            with transaction.atomic():
                invoice_build(
                    sub=sub,
                    period_start=start,
                    period_end=end,
                    reason=Invoice.Reason.SUBSCRIPTION_CYCLE,
                    now=now,
                )
        except IntegrityError:  # invoiced already (cannot happen under the lock; belt and braces)
            log.warning("period already invoiced", extra={"subscription": sub.id, "period_start": start})
        subscription_publish(sub)
        report.renewed += 1
    return True


# --------------------------------------------------------------------------- attempts


def invoice_collect(*, invoice_id: str, now: datetime | None = None) -> Invoice:
    """Make the invoice's due attempt now (subscription create, resume). Idempotent: an invoice
    not due (paid, or its attempt claimed by another runner) is left alone."""
    now = now or timezone.now()
    attempt_id = _claim(now=now, invoice_id=invoice_id)
    if attempt_id is not None and not isinstance(attempt_id, bool):
        _execute(attempt_id, now=now)
    return Invoice.objects.get(pk=invoice_id)


def subscription_first_invoice_collect(*, subscription_id: str) -> Subscription | None:
    """A subscription's creation retried after a crash: its first invoice charged now if that had
    not happened yet (idempotent: an invoice not due is left alone). None when the subscription
    does not exist."""
    sub = Subscription.objects.filter(pk=subscription_id).first()
    if sub is None:
        return None
    first = Invoice.objects.filter(
        subscription=sub, status=IS.OPEN, billing_reason=Invoice.Reason.SUBSCRIPTION_CREATE
    ).values_list("id", flat=True)
    for invoice_id in first:
        invoice_collect(invoice_id=invoice_id)
    sub.refresh_from_db()
    return sub


def subscription_update_and_collect(
    *,
    subscription_id: str,
    price_id: str | None = None,
    quantity: int | None = None,
    payment_method: str | None = None,
    proration_behavior: str = "create_prorations",
) -> Subscription:
    """``subscription_update``; a new payment method is charged for the open invoices at once
    (each invoice's due attempt, as ``invoice_collect``). Raises BillingError."""
    sub = subscription_update(
        subscription_id=subscription_id,
        price_id=price_id,
        quantity=quantity,
        payment_method=payment_method,
        proration_behavior=proration_behavior,
    )
    if payment_method:
        for invoice_id in Invoice.objects.filter(subscription=sub, status=IS.OPEN).values_list(
            "id", flat=True
        ):
            invoice_collect(invoice_id=invoice_id)
        sub.refresh_from_db()
    return sub


def invoice_attempt_run_one(*, now: datetime, report: RunReport | None = None) -> bool:
    """Claim, make and settle one due invoice attempt (or apply the final action to an invoice
    whose retries stopped and whose window ended). False when none is due."""
    report = report or RunReport()
    claimed = _claim(now=now, report=report)
    if claimed is False or claimed is None:
        return False
    if claimed is not True:  # an attempt's id (True: settled without one)
        report.attempts += 1
        status = _execute(claimed, now=now)
        if status == AS.SUCCEEDED:
            report.paid += 1
        elif status == AS.FAILED:
            report.failed += 1
    return True


def _claim(
    *, now: datetime, invoice_id: str | None = None, report: RunReport | None = None
) -> int | bool | None:
    """In one short transaction: lock a due invoice and its subscription (skipping locked ones) and
    record its next attempt (creating the invoice's payment with the first). Returns the attempt's
    id; True when the invoice was settled without an attempt (final action); False when nothing
    is due; None when ``invoice_id`` is not due."""
    with transaction.atomic():
        inv = invoice_due_claim(now=now, invoice_id=invoice_id)
        if inv is None:
            return None if invoice_id is not None else False
        sub = inv.subscription
        last = InvoiceAttempt.objects.filter(invoice=inv).order_by("-number").first()
        if last is not None and last.status == AS.PROCESSING:
            # A runner died mid-attempt, or the payment was still processing: resume that attempt.
            inv.next_attempt_at = now + LEASE
            inv.save(update_fields=["next_attempt_at", "updated_at"])
            return last.pk
        if inv.retries_stopped or sub.status == SS.CANCELED:
            _final_action(inv, sub, now, why=inv.retries_stopped or "subscription canceled")
            if report is not None:
                report.finalized += 1
            return True
        number = inv.attempt_count + 1
        attempt = InvoiceAttempt(
            invoice=inv, number=number, payment_method=sub.payment_method, started_at=now
        )
        if not inv.payment_id:
            try:
                with transaction.atomic():
                    intent = payment_intent_create(
                        amount=inv.amount_due,
                        currency=inv.currency,
                        payment_method=sub.payment_method,
                        customer_id=sub.customer_id,
                        description=f"Invoice {inv.number}",
                        metadata={"invoice": inv.id, "subscription": sub.id, **_simulator_key(sub, inv)},
                        off_session=True,
                        recurring=True,
                        splits=[{"vendor": sub.vendor_id, "share": "1"}] if sub.vendor_id else None,
                    )
                inv.payment_id = intent.id
            except PaymentError as exc:  # e.g. the vendor can no longer be paid: nothing charged
                attempt.payment_id = ""
                invoice_attempt_to(attempt, AS.FAILED)
                attempt.decline_code, attempt.action = exc.code[:80], "stop"
                attempt.finished_at = now
                attempt.save(force_insert=True)
                inv.attempt_count = number
                inv.save(update_fields=["payment_id", "attempt_count", "updated_at"])
                _after_failure(inv, sub, attempt, now, dunning_policy())
                return True
        else:
            attempt.payment_attempts_before = PaymentAttempt.objects.filter(intent_id=inv.payment_id).count()
            if not PaymentIntent.objects.filter(pk=inv.payment_id).exists():
                raise BillingError(f"invoice {inv.id} names a missing payment {inv.payment_id}")
        attempt.payment_id = inv.payment_id
        attempt.save(force_insert=True)
        inv.attempt_count = number
        inv.next_attempt_at = now + LEASE
        inv.save(update_fields=["payment_id", "attempt_count", "next_attempt_at", "updated_at"])
        return attempt.pk


def _execute(attempt_id: int, *, now: datetime) -> str:
    """Confirm the invoice's payment for this attempt unless that already happened (a resumed
    attempt), with no transaction open; then settle. Returns the attempt's status."""
    attempt = InvoiceAttempt.objects.get(pk=attempt_id)
    if attempt.status != AS.PROCESSING:
        return attempt.status
    intent = PaymentIntent.objects.get(pk=attempt.payment_id)
    started = PaymentAttempt.objects.filter(intent_id=intent.pk).count() > attempt.payment_attempts_before
    if not started and intent.status in ("requires_confirmation", "failed", "requires_action"):
        with contextlib.suppress(PaymentError):  # another runner moved it on: settle from what it is
            payment_confirm(
                intent_id=intent.pk,
                payment_method=attempt.payment_method
                if attempt.payment_method != intent.payment_method
                else None,
            )
    return _settle(attempt_id, now=now)


@dataclass(frozen=True)
class AttemptSettlement:
    """What an invoice attempt's payment says: ``status`` processing (its outcome is still being
    resolved: look again), succeeded or failed, with the gateways it tried and the decline."""

    status: str
    gateways: list[str]
    gateway: str
    decline_code: str = ""
    advice_code: str = ""
    action: str = ""


def attempt_settlement(
    *, intent_status: str, intent_gateway: str | None, last_error: dict | None, rows: list[tuple]
) -> AttemptSettlement:
    """Pure: the settlement of an attempt from its payment's status, gateway and last error and
    the payment's gateway attempts made for it (``rows``: gateway name, status, decline code,
    advice code, in order)."""
    gateways = [name for name, *_ in rows]
    declined = [row for row in rows if row[1] == "declined"]
    # The gateway that declined (the last one, after any failover), else the last one tried.
    gateway = declined[-1][0] if declined else (rows[-1][0] if rows else "")
    if intent_status in ("processing", "requires_capture"):
        return AttemptSettlement(AS.PROCESSING, gateways, gateway)
    if intent_status == "succeeded":
        return AttemptSettlement(AS.SUCCEEDED, gateways, intent_gateway or gateway)
    if intent_status == "requires_action":
        return AttemptSettlement(
            AS.FAILED, gateways, gateway, decline_code="authentication_required", action="retry"
        )
    error = last_error or {}
    # The issuer's answer when one declined (a gateway error after it does not hide it).
    code, advice = (declined[-1][2], declined[-1][3]) if declined else ("", "")
    return AttemptSettlement(
        AS.FAILED,
        gateways,
        gateway,
        decline_code=(code or error.get("decline_code") or error.get("code") or "")[:80],
        advice_code=(advice or error.get("advice_code") or "")[:80],
        action=(error.get("action") or "")[:20],
    )


def _settle(attempt_id: int, *, now: datetime) -> str:
    """Apply the payment's state to the attempt, the invoice and the subscription (locked in that
    order: subscription, invoice, attempt). Idempotent."""
    with transaction.atomic():
        sub, inv, attempt = invoice_attempt_lock(attempt_id)
        if attempt.status != AS.PROCESSING:
            return attempt.status
        intent = PaymentIntent.objects.select_related("gateway_account").get(pk=attempt.payment_id)
        rows = list(
            PaymentAttempt.objects.filter(intent_id=intent.pk, number__gt=attempt.payment_attempts_before)
            .order_by("number")
            .values_list("gateway_account__name", "status", "decline_code", "advice_code")
        )
        settled = attempt_settlement(
            intent_status=intent.status,
            intent_gateway=intent.gateway_account.name if intent.gateway_account else None,
            last_error=intent.last_error,
            rows=rows,
        )
        attempt.gateways, attempt.gateway = settled.gateways, settled.gateway
        if settled.status == AS.PROCESSING:
            inv.next_attempt_at = now + RECHECK  # an unknown outcome being resolved: look again
            inv.save(update_fields=["next_attempt_at", "updated_at"])
            attempt.save(update_fields=["gateways", "gateway"])
            return attempt.status
        attempt.finished_at = now
        invoice_attempt_to(attempt, settled.status)
        if settled.status == AS.SUCCEEDED:
            attempt.save()
            _paid(inv, sub, intent.amount_received, now)
            return attempt.status
        attempt.decline_code, attempt.advice_code = settled.decline_code, settled.advice_code
        attempt.action = settled.action
        attempt.save()
        _after_failure(inv, sub, attempt, now, dunning_policy())
        return attempt.status


def _paid(inv: Invoice, sub: Subscription, amount: int, now: datetime) -> None:
    invoice_to(inv, IS.PAID)  # after a void too: the money came in, so it is recorded (operators see it)
    inv.amount_paid, inv.paid_at, inv.next_attempt_at, inv.retries_stopped = amount, now, None, ""
    inv.save()
    invoice_publish(inv, "invoice.paid", "paid")
    if (
        sub.status in (SS.PAST_DUE, SS.UNPAID)
        and not Invoice.objects.filter(subscription=sub, status=IS.OPEN).exclude(pk=inv.pk).exists()
    ):
        subscription_to(sub, SS.ACTIVE)
        sub.save()
        subscription_publish(sub)


def _after_failure(
    inv: Invoice, sub: Subscription, attempt: InvoiceAttempt, now: datetime, policy: DunningPolicy
) -> None:
    """Dunning (``dunning.after_failure``): schedule the next attempt, stop on the issuer's advice,
    or apply the final action. The subscription goes past_due on the first failure. The customer
    is emailed."""
    if sub.status in (SS.ACTIVE, SS.TRIALING):
        subscription_to(sub, SS.PAST_DUE)
        sub.save()
        subscription_publish(sub)
    first = InvoiceAttempt.objects.filter(invoice=inv).order_by("number").first()
    step = dunning.after_failure(
        policy=policy,
        number=attempt.number,
        advice_code=attempt.advice_code,
        action=attempt.action,
        first_at=first.started_at if first else now,
        now=now,
        window_end=inv.dunning_ends_at,
    )
    invoice_publish(inv, "invoice.payment_failed", f"attempt:{attempt.number}:failed")
    if step.kind == "final":
        _final_action(inv, sub, now, why=f"{attempt.number} attempts failed")
        return
    fields = ["next_attempt_at", "updated_at"]
    if step.kind == "stop":  # the final action at the window's end, unless the customer gives a new card
        inv.retries_stopped = f"{attempt.decline_code or 'declined'}: no automatic retries on this card"
        fields.append("retries_stopped")
    inv.next_attempt_at = step.at
    inv.save(update_fields=fields)
    _email(inv, sub, "payment_failed", attempt.number, now)


def _final_action(inv: Invoice, sub: Subscription, now: datetime, *, why: str) -> None:
    inv.next_attempt_at = None
    inv.retries_stopped = inv.retries_stopped or why
    if dunning.final_action(dunning_policy(), subscription_canceled=sub.status == SS.CANCELED) == "cancel":
        invoice_to(inv, IS.UNCOLLECTIBLE)
        inv.closed_at = now
        inv.save()
        if sub.status != SS.CANCELED:
            subscription_end(sub, now)
            sub.save()
            subscription_publish(sub)
        _email(inv, sub, "subscription_canceled", 0, now)
        return
    inv.save()
    if sub.status != SS.UNPAID:
        subscription_to(sub, SS.UNPAID)
        sub.save()
        subscription_publish(sub)
    _email(inv, sub, "subscription_unpaid", 0, now)


def _email(inv: Invoice, sub: Subscription, kind: str, number: int, now: datetime) -> None:
    """Queue an email to the customer (durable: sent after the commit, at most once per key)."""
    if not dunning_policy().email_customers:
        return
    email = Customer.objects.filter(pk=inv.customer_id).values_list("email", flat=True).first()
    if not email:
        return
    durable_enqueue(
        handler="apps.billing.notifications.billing_email_send",
        kwargs={"invoice_id": inv.id, "kind": kind},
        idempotency_key=f"billing-email:{inv.id}:{kind}:{number}",
    )


def _simulator_key(sub, inv) -> dict:
    """Simulations key the simulator's draws per subscription and period (a payment's
    ``metadata.simulator_key``, which payments extends per attempt), so the same seed gives the
    same declines."""
    key = (sub.metadata or {}).get("simulator_key")
    return {"simulator_key": f"{key}:{inv.period_start:%Y%m%d}"} if key else {}
