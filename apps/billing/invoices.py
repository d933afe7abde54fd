"""Invoices: the billing set-up rows (dunning policy, number sequence), building and finalizing a
period's invoice (lines, pending prorations and credit, tax, number), voiding one, and cancelling
a voided invoice's unused payment. Charging invoices is ``collection``'s; subscriptions change in
``subscriptions``; ``services`` is the app's entry point (catalog, new periods, and every service
the API calls).

Every service takes ``now`` (default: the clock) so the renewal job and the simulation can move
a clock of their own. Rows are locked through ``locks`` and change state through ``states``.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.billing import amounts
from apps.billing.dunning import DEFAULT_SCHEDULE_DAYS, dunning_window_end
from apps.billing.errors import BillingError
from apps.billing.locks import invoice_lock, invoice_sequence_lock
from apps.billing.models import (
    DunningPolicy,
    Invoice,
    InvoiceAttempt,
    InvoiceLine,
    InvoiceSequence,
    PendingLine,
    Price,
    Subscription,
    TaxRate,
)
from apps.billing.states import invoice_to
from apps.core.durable import durable_enqueue, durable_run_now
from apps.payments.models import PaymentIntent
from apps.payments.services import PaymentError, payment_cancel
from apps.webhooks.outbound import event_publish

IS = Invoice.Status


# --------------------------------------------------------------------------- set-up


def billing_defaults_install(*, marketplace=None) -> None:
    """The default dunning policy and the invoice number sequence. Idempotent."""
    DunningPolicy.objects.bulk_create(
        [DunningPolicy(id=1, schedule_days=DEFAULT_SCHEDULE_DAYS)], ignore_conflicts=True
    )
    InvoiceSequence.objects.bulk_create([InvoiceSequence(id=1)], ignore_conflicts=True)


def dunning_policy() -> DunningPolicy:
    policy = DunningPolicy.objects.filter(pk=1).first()
    if policy is None:
        billing_defaults_install()
        policy = DunningPolicy.objects.get(pk=1)
    return policy


def _invoice_number_take() -> str:
    """The next number of this marketplace's sequence (locks its row until the commit: numbers
    are gapless and unique per tenant)."""
    InvoiceSequence.objects.bulk_create([InvoiceSequence(id=1)], ignore_conflicts=True)
    seq = invoice_sequence_lock()
    number = seq.next_number
    seq.next_number = number + 1
    seq.save(update_fields=["next_number"])
    return f"{seq.prefix}-{number:06d}"


# --------------------------------------------------------------------------- events


def invoice_publish(inv: Invoice, event_type: str, key: str) -> None:
    """Publish ``event_type`` for the invoice, once per ``key``, in the caller's transaction."""
    event_publish(
        type=event_type, object_type="invoice", object_id=inv.id, source_key=f"billing:{inv.id}:{key}"
    )


# --------------------------------------------------------------------------- invoices


def price_amount(price: Price, currency: str) -> int:
    """The price's amount in ``currency``; BillingError when it has none."""
    amount = price.amounts.get(currency)
    if amount is None:
        raise BillingError(f"price {price.id} has no amount in {currency.lower()}", param="currency")
    return int(amount)


def _rates_for(jurisdiction: str) -> list[TaxRate]:
    if not jurisdiction:
        return []
    return list(TaxRate.objects.filter(jurisdiction=jurisdiction, active=True).order_by("id"))


def invoice_build(
    *, sub: Subscription, period_start: datetime, period_end: datetime, reason: str, now: datetime
) -> Invoice:
    """Inside the caller's transaction, with ``sub`` locked: a finalized (open) invoice for the
    period with the subscription line, its pending lines (prorations, credit) and tax. Raises
    IntegrityError when the period is already invoiced. An invoice with nothing to pay is paid
    at once; a negative total is carried to the next invoice as credit."""
    inv = Invoice(
        subscription=sub,
        customer_id=sub.customer_id,
        currency=sub.currency,
        billing_reason=reason,
        period_start=period_start,
        period_end=period_end,
    )
    unit = price_amount(sub.price, sub.currency)
    lines = [
        InvoiceLine(
            kind=InvoiceLine.Kind.SUBSCRIPTION,
            description=f"{sub.quantity} x {sub.price}",
            quantity=sub.quantity,
            unit_amount=unit,
            amount=unit * sub.quantity,
            currency=sub.currency,
            price=sub.price,
            period_start=period_start,
            period_end=period_end,
        )
    ]
    pending = list(PendingLine.objects.filter(subscription=sub, invoice__isnull=True, currency=sub.currency))
    lines += [
        InvoiceLine(
            kind=p.kind,
            description=p.description,
            amount=p.amount,
            currency=p.currency,
            period_start=p.period_start,
            period_end=p.period_end,
        )
        for p in pending
    ]
    rates = _rates_for(sub.tax_jurisdiction)
    base = sum(line.amount for line in lines)
    taxes = amounts.tax_lines(base, [amounts.Rate(r.id, r.percentage, r.inclusive) for r in rates])
    by_id = {r.id: r for r in rates}
    lines += [
        InvoiceLine(
            kind=InvoiceLine.Kind.TAX,
            description=f"{by_id[t.key].display_name} {by_id[t.key].percentage.normalize()}%"
            f"{' (included)' if t.inclusive else ''}",
            amount=t.amount,
            currency=sub.currency,
            tax_rate=by_id[t.key],
            inclusive=t.inclusive,
        )
        for t in taxes
    ]
    tot = amounts.totals([line.amount for line in lines if line.kind != InvoiceLine.Kind.TAX], taxes)
    inv.subtotal, inv.tax, inv.total = tot.subtotal, tot.tax, tot.total
    inv.amount_due = max(tot.total, 0)
    invoice_to(inv, IS.OPEN)
    inv.number = _invoice_number_take()
    inv.finalized_at = now
    if inv.amount_due == 0:
        invoice_to(inv, IS.PAID)
        inv.paid_at = now
    inv.save(force_insert=True)
    for line in lines:
        line.invoice = inv
    InvoiceLine.objects.bulk_create(lines)
    if pending:
        PendingLine.objects.filter(pk__in=[p.pk for p in pending]).update(invoice=inv)
    if tot.total < 0:  # more credit than charges: the rest waits for the next invoice
        PendingLine.objects.create(
            subscription=sub,
            kind=InvoiceLine.Kind.CREDIT,
            description=f"credit carried over from {inv.number}",
            amount=tot.total,
            currency=sub.currency,
        )
    if inv.status == IS.PAID:
        invoice_publish(inv, "invoice.paid", "paid")
    else:
        policy = dunning_policy()
        inv.next_attempt_at = now
        inv.dunning_ends_at = dunning_window_end(policy, now)
        inv.save(update_fields=["next_attempt_at", "dunning_ends_at"])
    return inv


def invoice_void(*, invoice_id: str, now: datetime | None = None) -> Invoice:
    """Void an open invoice (no more attempts). Raises BillingError when it is paid, void, or
    an attempt is in flight (then try again later). Its unused payment is canceled after the
    commit, with no transaction open (``invoice_payment_cancel``)."""
    with transaction.atomic():
        _, inv = invoice_lock(invoice_id)
        invoice_void_locked(inv, now or timezone.now())
    payment_cancels_run([inv.id])
    return inv


def invoice_void_locked(inv: Invoice, now: datetime) -> None:
    """Void a locked invoice (in the caller's transaction) and record, durably, that its unused
    payment is to be canceled: the gateway is called later, never inside this transaction."""
    if InvoiceAttempt.objects.filter(invoice=inv, status=InvoiceAttempt.Status.PROCESSING).exists():
        raise BillingError(
            f"invoice {inv.id} has a payment attempt in flight", code="invoice_unexpected_state"
        )
    invoice_to(inv, IS.VOID)
    inv.closed_at, inv.next_attempt_at = now, None
    inv.save(update_fields=["status", "closed_at", "next_attempt_at", "updated_at"])
    if inv.payment_id:
        durable_enqueue(
            handler="apps.billing.invoices.invoice_payment_cancel",
            kwargs={"invoice_id": inv.id},
            idempotency_key=_payment_cancel_key(inv.id),
        )


def _payment_cancel_key(invoice_id: str) -> str:
    return f"invoice:{invoice_id}:payment-cancel"


def payment_cancels_run(invoice_ids: list[str]) -> None:
    """Right after a void committed: cancel the voided invoices' payments now rather than wait
    for the worker (the same durable tasks, so each runs once). Does nothing inside a caller's
    transaction: the worker runs them after that commits."""
    if transaction.get_connection().in_atomic_block:
        return
    durable_run_now(idempotency_keys=[_payment_cancel_key(i) for i in invoice_ids])


def invoice_payment_cancel(*, invoice_id: str) -> str:
    """Durable task: cancel a voided invoice's payment if it was never captured, so it cannot be
    confirmed again. Idempotent (``payment_cancel`` is); called with no transaction open, since
    cancelling may call the payment's gateway. A payment that cannot be canceled (captured
    meanwhile, or not cancelable) is left as it is; a gateway that failed to answer raises, and
    the task retries."""
    payment_id = Invoice.objects.values_list("payment_id", flat=True).get(pk=invoice_id)
    intent = PaymentIntent.objects.filter(pk=payment_id).first() if payment_id else None
    if intent is None or intent.status not in ("requires_confirmation", "failed", "requires_action"):
        return f"nothing to cancel ({intent.status if intent else 'no payment'})"
    try:
        payment_cancel(intent_id=intent.pk, reason="invoice voided")
    except PaymentError as exc:
        if exc.code == "cancel_failed":
            raise
        return f"left as it is: {exc}"
    return "canceled"
