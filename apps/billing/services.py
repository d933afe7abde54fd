"""Every way billing state changes: catalog (products, prices, tax rates), subscriptions (create,
change with proration, pause, resume, cancel, card update) and invoices (build, finalize, void).
Renewals and dunning, which charge invoices through the payment mesh, are in ``collection.py``.

Every service takes ``now`` (default: the clock) so the renewal job and the simulation can move
a clock of their own. Rows are locked through ``locks`` (one order everywhere: subscription, then
its invoices, then the invoice number sequence) and change state through ``states``.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from apps.billing import amounts
from apps.billing.dunning import DEFAULT_SCHEDULE_DAYS, dunning_window_end
from apps.billing.errors import BillingError
from apps.billing.locks import invoice_lock, invoice_sequence_lock, open_invoices_lock, subscription_lock
from apps.billing.models import (
    DunningPolicy,
    Invoice,
    InvoiceAttempt,
    InvoiceLine,
    InvoiceSequence,
    PendingLine,
    Price,
    Product,
    Subscription,
    TaxRate,
)
from apps.billing.states import invoice_to, subscription_to
from apps.core.durable import durable_enqueue, durable_run_now
from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.core.recovery import recovery_point
from apps.customers.models import Customer
from apps.payments.models import PaymentIntent
from apps.payments.services import PaymentError, payment_cancel
from apps.vendors.funds import split_plan_prepare
from apps.vendors.splits import SplitError
from apps.webhooks.outbound import event_publish

SS, IS = Subscription.Status, Invoice.Status


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


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


def subscription_publish(sub: Subscription) -> None:
    """Tell storefronts the subscription changed (``customer.subscription.updated``), in the
    caller's transaction."""
    event_publish(
        type="customer.subscription.updated",
        object_type="subscription",
        object_id=sub.id,
        source_key=f"billing:{sub.id}:updated:{secrets.token_hex(8)}",
    )


def invoice_publish(inv: Invoice, event_type: str, key: str) -> None:
    """Publish ``event_type`` for the invoice, once per ``key``, in the caller's transaction."""
    event_publish(
        type=event_type, object_type="invoice", object_id=inv.id, source_key=f"billing:{inv.id}:{key}"
    )


# --------------------------------------------------------------------------- catalog


def product_create(
    *, name: str, description: str = "", metadata: dict | None = None, active: bool = True
) -> Product:
    if not name.strip():
        raise BillingError("name must not be empty", code="parameter_missing", param="name")
    return Product.objects.create(
        name=name.strip(), description=description, metadata=metadata or {}, active=active
    )


def product_update(
    *, product: Product, name: str | None = None, description: str | None = None, active: bool | None = None
) -> Product:
    for field, value in (("name", name), ("description", description), ("active", active)):
        if value is not None:
            setattr(product, field, value)
    product.save()
    return product


# A price times the largest quantity (1,000,000) plus tax must fit the ledger's bigint amounts.
MAX_PRICE_AMOUNT = 10**12


def _amounts_check(raw: object) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise BillingError('amounts must map currencies to amounts, e.g. {"usd": 1000}', param="amounts")
    out: dict[str, int] = {}
    for code, value in raw.items():
        try:
            currency = normalize_currency(code)
            amount = require_amount(value)
        except MoneyError as exc:
            raise BillingError(str(exc), param=f"amounts.{str(code).lower()}") from None
        if currency in out:
            raise BillingError(f"{currency} is given twice", param=f"amounts.{currency.lower()}")
        if amount > MAX_PRICE_AMOUNT:
            raise BillingError(
                f"an amount is at most {MAX_PRICE_AMOUNT} minor units", param=f"amounts.{currency.lower()}"
            )
        out[currency] = amount
    return out


def price_create(
    *,
    product_id: str,
    amounts: dict,
    interval: str,
    interval_count: int = 1,
    trial_days: int = 0,
    nickname: str = "",
    metadata: dict | None = None,
) -> Price:
    """A price in several currencies. Raises BillingError naming the bad field."""
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise BillingError(f"No such product: {product_id!r}", code="resource_missing", param="product")
    if interval not in Price.Interval.values:
        raise BillingError(f"interval must be one of {', '.join(Price.Interval.values)}", param="interval")
    if not 1 <= interval_count <= 365:
        raise BillingError("interval_count must be from 1 to 365", param="interval_count")
    if not 0 <= trial_days <= 730:
        raise BillingError("trial_days must be from 0 to 730", param="trial_days")
    return Price.objects.create(
        product=product,
        amounts=_amounts_check(amounts),
        interval=interval,
        interval_count=interval_count,
        trial_days=trial_days,
        nickname=nickname,
        metadata=metadata or {},
    )


def price_update(*, price: Price, active: bool | None = None, nickname: str | None = None) -> Price:
    """Amounts and interval never change (subscriptions rely on them): create a new price."""
    if active is not None:
        price.active = active
    if nickname is not None:
        price.nickname = nickname
    price.save()
    return price


def tax_rate_create(
    *, display_name: str, jurisdiction: str, percentage: str | Decimal, inclusive: bool = False
) -> TaxRate:
    try:
        pct = Decimal(str(percentage))
    except InvalidOperation:
        raise BillingError(
            'percentage must be a decimal number, e.g. "19" or "7.25"', param="percentage"
        ) from None
    if not pct.is_finite() or not Decimal(0) <= pct < Decimal(100) or pct != pct.quantize(Decimal("0.0001")):
        raise BillingError("percentage must be from 0 to 100 with at most 4 decimals", param="percentage")
    pct = abs(pct)  # "-0" is 0
    if not jurisdiction.strip():
        raise BillingError("jurisdiction must not be empty", code="parameter_missing", param="jurisdiction")
    return TaxRate.objects.create(
        display_name=display_name or "Tax",
        jurisdiction=jurisdiction.strip().upper(),
        percentage=pct,
        inclusive=inclusive,
    )


# --------------------------------------------------------------------------- invoices


def _price_amount(price: Price, currency: str) -> int:
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
    unit = _price_amount(sub.price, sub.currency)
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
        _void(inv, _now(now))
    payment_cancels_run([inv.id])
    return inv


def _void(inv: Invoice, now: datetime) -> None:
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
            handler="apps.billing.services.invoice_payment_cancel",
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


# --------------------------------------------------------------------------- subscriptions


def subscription_create(
    *,
    customer_id: str,
    price_id: str,
    currency: str,
    payment_method: str,
    quantity: int = 1,
    vendor_id: str = "",
    tax_jurisdiction: str = "",
    trial_days: int | None = None,
    metadata: dict | None = None,
    now: datetime | None = None,
    collect: bool = True,
) -> Subscription:
    """A subscription: trialing (no invoice until the trial ends) or active with its first
    invoice, which is charged off-session at once (``collect``) through the mesh. A first charge
    that fails leaves it past_due, in dunning. Raises BillingError (nothing written)."""
    now = _now(now)
    if not Customer.objects.filter(pk=customer_id).exists():
        raise BillingError(f"No such customer: {customer_id!r}", code="resource_missing", param="customer")
    price = Price.objects.select_related("product").filter(pk=price_id).first()
    if price is None or not price.active:
        raise BillingError(f"No such active price: {price_id!r}", code="resource_missing", param="price")
    try:
        currency = normalize_currency(currency)
    except MoneyError as exc:
        raise BillingError(str(exc), param="currency") from None
    amount = _price_amount(price, currency)
    if quantity < 1:
        raise BillingError("quantity must be at least 1", param="quantity")
    if not payment_method.strip():
        raise BillingError("payment_method is required", code="parameter_missing", param="payment_method")
    if vendor_id:
        _vendor_check(vendor_id, amount * quantity, currency)
    trial = price.trial_days if trial_days is None else trial_days
    if trial < 0:
        raise BillingError("trial_days must not be negative", param="trial_days")
    with transaction.atomic():
        sub = Subscription(
            customer_id=customer_id,
            price=price,
            currency=currency,
            quantity=quantity,
            vendor_id=vendor_id,
            payment_method=payment_method.strip(),
            tax_jurisdiction=tax_jurisdiction.strip().upper(),
            metadata=metadata or {},
            current_period_start=now,
        )
        recovery_point("subscription", sub.id)
        if trial:
            sub.status = SS.TRIALING
            sub.trial_end = sub.billing_cycle_anchor = sub.current_period_end = now + amounts.interval_delta(
                "day", trial
            )
            sub.save(force_insert=True)
            subscription_publish(sub)
            return sub
        sub.status = SS.ACTIVE
        inv = _period_start(sub, now, reason=Invoice.Reason.SUBSCRIPTION_CREATE, insert=True)
    return _collect_first(sub, inv, now=now, collect=collect)


def _period_start(sub: Subscription, now: datetime, *, reason: str, insert: bool = False) -> Invoice:
    """A new period from ``now`` (the billing anchor) for an active subscription, saved, with its
    invoice built and the change announced (in the caller's transaction)."""
    sub.billing_cycle_anchor = sub.current_period_start = now
    sub.current_period_end = amounts.period_end_after(
        now, now, interval=sub.price.interval, count=sub.price.interval_count
    )
    sub.save(force_insert=insert)
    inv = invoice_build(sub=sub, period_start=now, period_end=sub.current_period_end, reason=reason, now=now)
    subscription_publish(sub)
    return inv


def _collect_first(sub: Subscription, inv: Invoice, *, now: datetime, collect: bool) -> Subscription:
    """Charge a new period's open invoice at once (after the commit), when asked."""
    if collect and inv.status == IS.OPEN:
        from apps.billing.collection import invoice_collect

        invoice_collect(invoice_id=inv.id, now=now)
        sub.refresh_from_db()
    return sub


def _vendor_check(vendor_id: str, amount: int, currency: str) -> None:
    try:
        split_plan_prepare([{"vendor": vendor_id, "share": "1"}], amount=amount, currency=currency)
    except SplitError as exc:
        raise BillingError(str(exc), code=exc.code, param="vendor") from None


def _locked(subscription_id: str) -> Subscription:
    sub = subscription_lock(subscription_id)
    if sub is None:
        raise BillingError(f"No such subscription: {subscription_id!r}", code="resource_missing")
    return sub


def subscription_update(
    *,
    subscription_id: str,
    price_id: str | None = None,
    quantity: int | None = None,
    payment_method: str | None = None,
    proration_behavior: str = "create_prorations",
    retry_now: bool = True,
    now: datetime | None = None,
) -> Subscription:
    """Change the price, quantity or payment method. A price or quantity change in a paid period
    is prorated (``create_prorations``, the default): the unused part of the old plan is credited
    and the rest of the period charged at the new one, both on the next invoice (see amounts.py for
    the rounding); ``none`` changes without proration. The new price must bill in the
    subscription's currency at the same interval. A new payment method is used from the next
    attempt; with ``retry_now`` open invoices are retried at once (even after a stop)."""
    now = _now(now)
    if proration_behavior not in ("create_prorations", "none"):
        raise BillingError("proration_behavior must be create_prorations or none", param="proration_behavior")
    with transaction.atomic():
        sub = _locked(subscription_id)
        if sub.status in (SS.CANCELED,):
            raise BillingError(f"subscription {sub.id} is canceled", code="subscription_unexpected_state")
        old_price, old_qty = sub.price, sub.quantity
        new_price = old_price
        if price_id and price_id != old_price.id:
            found = Price.objects.filter(pk=price_id, active=True).first()
            if found is None:
                raise BillingError(
                    f"No such active price: {price_id!r}", code="resource_missing", param="price"
                )
            new_price = found
            if (new_price.interval, new_price.interval_count) != (
                old_price.interval,
                old_price.interval_count,
            ):
                raise BillingError("the new price must have the same billing interval", param="price")
            _price_amount(new_price, sub.currency)
        new_qty = old_qty if quantity is None else quantity
        if new_qty < 1:
            raise BillingError("quantity must be at least 1", param="quantity")
        changed = (new_price.id, new_qty) != (old_price.id, old_qty)
        if changed and sub.vendor_id:
            _vendor_check(sub.vendor_id, _price_amount(new_price, sub.currency) * new_qty, sub.currency)
        if (
            changed
            and proration_behavior == "create_prorations"
            and sub.status in (SS.ACTIVE, SS.PAST_DUE)
            and sub.current_period_start <= now < sub.current_period_end
        ):
            remaining = sub.current_period_end - now
            period = sub.current_period_end - sub.current_period_start
            old_amount = _price_amount(old_price, sub.currency) * old_qty
            new_amount = _price_amount(new_price, sub.currency) * new_qty
            for amount, text in (
                (
                    -amounts.prorate(old_amount, remaining=remaining, period=period),
                    f"Unused time on {old_qty} x {old_price}",
                ),
                (
                    amounts.prorate(new_amount, remaining=remaining, period=period),
                    f"Remaining time on {new_qty} x {new_price}",
                ),
            ):
                PendingLine.objects.create(
                    subscription=sub,
                    kind=InvoiceLine.Kind.PRORATION,
                    description=text,
                    amount=amount,
                    currency=sub.currency,
                    period_start=now,
                    period_end=sub.current_period_end,
                )
        sub.price, sub.quantity = new_price, new_qty
        if payment_method is not None and payment_method.strip():
            sub.payment_method = payment_method.strip()
            if retry_now:
                _retry_open_invoices(sub, now)
        sub.save()
        subscription_publish(sub)
    return sub


def _retry_open_invoices(sub: Subscription, now: datetime) -> None:
    """A new card: every open invoice gets an attempt now, even after the issuer said stop."""
    for inv in open_invoices_lock(sub):
        inv.retries_stopped = ""
        inv.next_attempt_at = now
        if inv.dunning_ends_at is None or inv.dunning_ends_at < now:
            inv.dunning_ends_at = dunning_window_end(dunning_policy(), now)
        inv.save(update_fields=["retries_stopped", "next_attempt_at", "dunning_ends_at", "updated_at"])


def subscription_payment_method_update(
    *, subscription_id: str, payment_method: str, retry_now: bool = True, now: datetime | None = None
) -> Subscription:
    """The customer's new card (the card-update page): saved, and open invoices retried now
    (the renewal job makes the attempt). Raises BillingError for what is not a payment method
    token."""
    if not payment_method:
        raise BillingError("Enter a payment method.", param="payment_method")
    if len(payment_method) > 255 or "\x00" in payment_method:
        raise BillingError("That is not a payment method token.", param="payment_method")
    return subscription_update(
        subscription_id=subscription_id, payment_method=payment_method, retry_now=retry_now, now=now
    )


def subscription_cancel(
    *, subscription_id: str, at_period_end: bool = False, now: datetime | None = None
) -> Subscription:
    """Cancel now (open invoices are voided, pending prorations dropped) or at the end of the
    period (the renewal job ends it instead of renewing). Idempotent on a canceled subscription."""
    now = _now(now)
    with transaction.atomic():
        sub = _locked(subscription_id)
        if sub.status == SS.CANCELED:
            return sub
        if at_period_end:
            sub.cancel_at_period_end = True
            sub.canceled_at = now
        else:
            subscription_end(sub, now)
        sub.save()
        subscription_publish(sub)
    if sub.status == SS.CANCELED:
        voided = Invoice.objects.filter(subscription=sub, status=IS.VOID, closed_at=now)
        payment_cancels_run(list(voided.values_list("pk", flat=True)))
    return sub


def subscription_end(sub: Subscription, now: datetime) -> None:
    """Cancel the subscription now: its open invoices are voided, its pending lines dropped. The
    caller holds the subscription's lock and saves it."""
    subscription_to(sub, SS.CANCELED)
    sub.canceled_at = sub.canceled_at or now
    sub.ended_at = now
    for inv in open_invoices_lock(sub):
        _void(inv, now)
    PendingLine.objects.filter(subscription=sub, invoice__isnull=True).delete()


def subscription_pause(*, subscription_id: str, now: datetime | None = None) -> Subscription:
    """Stop renewing (no proration of the current period). Resume starts a new period."""
    now = _now(now)
    with transaction.atomic():
        sub = _locked(subscription_id)
        subscription_to(sub, SS.PAUSED)
        sub.paused_at = now
        sub.save()
        subscription_publish(sub)
    return sub


def subscription_resume(
    *, subscription_id: str, now: datetime | None = None, collect: bool = True
) -> Subscription:
    """Active again with a new period from now (the new billing anchor), invoiced and charged at once."""
    now = _now(now)
    with transaction.atomic():
        sub = _locked(subscription_id)
        subscription_to(sub, SS.ACTIVE)
        sub.paused_at = None
        inv = _period_start(sub, now, reason=Invoice.Reason.SUBSCRIPTION_RESUME)
    return _collect_first(sub, inv, now=now, collect=collect)
