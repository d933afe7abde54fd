"""Billing's services, as the API, the pages and the commands call them. Here: the catalog
(products, prices, tax rates) and the services that start a subscription's period and charge its
invoice at once (create, resume). Re-exported from where they live: invoices (``invoices``: build,
void, cancelling a voided invoice's payment) and changes to a subscription (``subscriptions``:
price, quantity, card, pause, cancel). Renewals and dunning, which charge invoices through the
payment mesh, are in ``collection``. The modules import one way only:
``services -> collection -> subscriptions -> invoices``.

Every service takes ``now`` (default: the clock) so the renewal job and the simulation can move
a clock of their own. Rows are locked through ``locks`` (one order everywhere: subscription, then
its invoices, then the invoice number sequence) and change state through ``states``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from apps.billing import amounts
from apps.billing.collection import invoice_collect
from apps.billing.errors import BillingError
from apps.billing.invoices import (
    billing_defaults_install,
    invoice_build,
    invoice_payment_cancel,
    invoice_void,
    price_amount,
)
from apps.billing.models import Invoice, Price, Product, Subscription, TaxRate
from apps.billing.states import subscription_to
from apps.billing.subscriptions import (
    subscription_cancel,
    subscription_locked,
    subscription_method_check,
    subscription_pause,
    subscription_payment_method_update,
    subscription_publish,
    subscription_update,
    vendor_check,
)
from apps.core.money import MoneyError, normalize_currency, require_amount
from apps.core.recovery import recovery_point
from apps.customers.models import Customer

# The app's services in one place for the API, the pages and the commands. Also named here by their
# dotted paths: ``billing_defaults_install`` (settings.TENANT_PROVISIONERS) and
# ``invoice_payment_cancel`` (durable tasks queued before it moved to ``invoices``).
__all__ = [
    "BillingError",
    "billing_defaults_install",
    "invoice_payment_cancel",
    "invoice_void",
    "price_create",
    "price_update",
    "product_create",
    "product_update",
    "subscription_cancel",
    "subscription_create",
    "subscription_pause",
    "subscription_payment_method_update",
    "subscription_resume",
    "subscription_update",
    "tax_rate_create",
]

SS, IS = Subscription.Status, Invoice.Status


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
    now = now or timezone.now()
    if not Customer.objects.filter(pk=customer_id).exists():
        raise BillingError(f"No such customer: {customer_id!r}", code="resource_missing", param="customer")
    price = Price.objects.select_related("product").filter(pk=price_id).first()
    if price is None or not price.active:
        raise BillingError(f"No such active price: {price_id!r}", code="resource_missing", param="price")
    try:
        currency = normalize_currency(currency)
    except MoneyError as exc:
        raise BillingError(str(exc), param="currency") from None
    amount = price_amount(price, currency)
    if quantity < 1:
        raise BillingError("quantity must be at least 1", param="quantity")
    if not payment_method.strip():
        raise BillingError("payment_method is required", code="parameter_missing", param="payment_method")
    subscription_method_check(payment_method.strip(), customer_id)
    if vendor_id:
        vendor_check(vendor_id, amount * quantity, currency)
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
        invoice_collect(invoice_id=inv.id, now=now)
        sub.refresh_from_db()
    return sub


def subscription_resume(
    *, subscription_id: str, now: datetime | None = None, collect: bool = True
) -> Subscription:
    """Active again with a new period from now (the new billing anchor), invoiced and charged at once."""
    now = now or timezone.now()
    with transaction.atomic():
        sub = subscription_locked(subscription_id)
        subscription_to(sub, SS.ACTIVE)
        sub.paused_at = None
        inv = _period_start(sub, now, reason=Invoice.Reason.SUBSCRIPTION_RESUME)
    return _collect_first(sub, inv, now=now, collect=collect)
