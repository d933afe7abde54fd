"""Changes to an existing subscription that charge nothing at once: price, quantity and payment
method (with proration), pause, cancel (now, voiding its open invoices, or at the period's end).
Starting a period and charging it at once (create, resume) is in ``services``; renewals and
dunning in ``collection``.

Every service takes ``now`` (default: the clock). Rows are locked through ``locks`` (one order
everywhere: subscription, then its invoices, then the invoice number sequence) and change state
through ``states``.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.billing import amounts
from apps.billing.dunning import dunning_window_end
from apps.billing.errors import BillingError
from apps.billing.invoices import dunning_policy, invoice_void_locked, payment_cancels_run, price_amount
from apps.billing.locks import open_invoices_lock, subscription_lock
from apps.billing.models import Invoice, InvoiceLine, PendingLine, Price, Subscription
from apps.billing.states import subscription_to
from apps.payments.services import PaymentError, payment_method_check
from apps.vendors.funds import split_plan_prepare
from apps.vendors.splits import SplitError
from apps.webhooks.outbound import event_publish

SS, IS = Subscription.Status, Invoice.Status


def subscription_publish(sub: Subscription) -> None:
    """Tell storefronts the subscription changed (``customer.subscription.updated``), in the
    caller's transaction."""
    event_publish(
        type="customer.subscription.updated",
        object_type="subscription",
        object_id=sub.id,
        source_key=f"billing:{sub.id}:updated:{secrets.token_hex(8)}",
    )


def vendor_check(vendor_id: str, amount: int, currency: str) -> None:
    """BillingError (naming ``vendor``) unless the vendor can be paid this amount in full."""
    try:
        split_plan_prepare([{"vendor": vendor_id, "share": "1"}], amount=amount, currency=currency)
    except SplitError as exc:
        raise BillingError(str(exc), code=exc.code, param="vendor") from None


def subscription_method_check(payment_method: str, customer_id: str) -> None:
    """BillingError unless the subscription's customer may be charged with ``payment_method``:
    payments' rule (``payment_method_check``: a saved method of another customer is
    ``payment_method_customer_mismatch``, an unknown one ``resource_missing``), checked before
    anything is saved rather than found by the first charge."""
    try:
        payment_method_check(payment_method=payment_method, customer_id=customer_id)
    except PaymentError as exc:
        raise BillingError(str(exc), code=exc.code, param=exc.param or "payment_method") from None


def subscription_locked(subscription_id: str) -> Subscription:
    """The subscription, locked (``locks.subscription_lock``); BillingError when there is none."""
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
    now = now or timezone.now()
    if proration_behavior not in ("create_prorations", "none"):
        raise BillingError("proration_behavior must be create_prorations or none", param="proration_behavior")
    with transaction.atomic():
        sub = subscription_locked(subscription_id)
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
            price_amount(new_price, sub.currency)
        new_qty = old_qty if quantity is None else quantity
        if new_qty < 1:
            raise BillingError("quantity must be at least 1", param="quantity")
        changed = (new_price.id, new_qty) != (old_price.id, old_qty)
        if changed and sub.vendor_id:
            vendor_check(sub.vendor_id, price_amount(new_price, sub.currency) * new_qty, sub.currency)
        if (
            changed
            and proration_behavior == "create_prorations"
            and sub.status in (SS.ACTIVE, SS.PAST_DUE)
            and sub.current_period_start <= now < sub.current_period_end
        ):
            remaining = sub.current_period_end - now
            period = sub.current_period_end - sub.current_period_start
            old_amount = price_amount(old_price, sub.currency) * old_qty
            new_amount = price_amount(new_price, sub.currency) * new_qty
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
            subscription_method_check(payment_method.strip(), sub.customer_id)
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
    now = now or timezone.now()
    with transaction.atomic():
        sub = subscription_locked(subscription_id)
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
        invoice_void_locked(inv, now)
    PendingLine.objects.filter(subscription=sub, invoice__isnull=True).delete()


def subscription_pause(*, subscription_id: str, now: datetime | None = None) -> Subscription:
    """Stop renewing (no proration of the current period). Resume starts a new period."""
    now = now or timezone.now()
    with transaction.atomic():
        sub = subscription_locked(subscription_id)
        subscription_to(sub, SS.PAUSED)
        sub.paused_at = now
        sub.save()
        subscription_publish(sub)
    return sub
