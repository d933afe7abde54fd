"""Subscriptions billing: products and prices, tax rates, subscriptions, invoices (with lines and
payment attempts), the dunning policy and the per-tenant invoice number sequence.

Money is integer minor units with an upper-case ISO code (``apps.core.money``). A price holds one
amount per currency; a subscription bills in one of them."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.db import models

from apps.core.ids import new_id


def new_product_id() -> str:
    return new_id("prod_")


def new_price_id() -> str:
    return new_id("price_")


def new_tax_rate_id() -> str:
    return new_id("txr_")


def new_subscription_id() -> str:
    return new_id("sub_")


def new_invoice_id() -> str:
    return new_id("in_")


def new_access_token() -> str:
    return secrets.token_urlsafe(24)


class Product(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_product_id, editable=False)
    name = models.CharField(max_length=256)
    description = models.CharField(max_length=500, blank=True)
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Price(models.Model):
    """What a product costs per interval, in several currencies: ``amounts`` maps an upper-case
    ISO code to minor units, e.g. ``{"USD": 1000, "EUR": 900, "JPY": 1500}``."""

    class Interval(models.TextChoices):
        DAY = "day"
        WEEK = "week"
        MONTH = "month"
        YEAR = "year"

    id = models.CharField(primary_key=True, max_length=40, default=new_price_id, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="prices")
    nickname = models.CharField(max_length=256, blank=True)
    amounts = models.JSONField()
    interval = models.CharField(max_length=8, choices=Interval.choices)
    interval_count = models.PositiveIntegerField(default=1)
    trial_days = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        every = self.interval if self.interval_count == 1 else f"{self.interval_count} {self.interval}s"
        return f"{self.nickname or self.product.name} / {every} ({self.id})"


class TaxRate(models.Model):
    """A tax applied to invoices of customers in ``jurisdiction`` (e.g. ``DE``, ``US-CA``).
    Inclusive: the price already contains it; exclusive: it is added on top."""

    id = models.CharField(primary_key=True, max_length=40, default=new_tax_rate_id, editable=False)
    display_name = models.CharField(max_length=100)
    jurisdiction = models.CharField(max_length=20, db_index=True)
    percentage = models.DecimalField(max_digits=7, decimal_places=4)
    inclusive = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["jurisdiction", "display_name", "id"]

    def __str__(self) -> str:
        kind = "incl." if self.inclusive else "excl."
        return f"{self.display_name} {self.percentage}% {kind} ({self.jurisdiction})"


class Subscription(models.Model):
    class Status(models.TextChoices):
        TRIALING = "trialing"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        UNPAID = "unpaid"
        PAUSED = "paused"
        CANCELED = "canceled"

    id = models.CharField(primary_key=True, max_length=40, default=new_subscription_id, editable=False)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="subscriptions")
    currency = models.CharField(max_length=3)
    quantity = models.PositiveIntegerField(default=1)
    vendor_id = models.CharField(max_length=40, blank=True, help_text="the vendor each paid invoice pays")
    payment_method = models.CharField(max_length=255, help_text="the customer's saved payment method")
    tax_jurisdiction = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, db_index=True)
    billing_cycle_anchor = models.DateTimeField(help_text="periods end at anchor + n intervals")
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField(db_index=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "current_period_end"], name="billing_sub_due")]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"


class PendingLine(models.Model):
    """A line waiting for the subscription's next invoice (prorations, carried-over credit)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="pending_lines")
    kind = models.CharField(max_length=16)
    description = models.CharField(max_length=300)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    invoice = models.ForeignKey("Invoice", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        PAID = "paid"
        UNCOLLECTIBLE = "uncollectible"
        VOID = "void"

    class Reason(models.TextChoices):
        SUBSCRIPTION_CREATE = "subscription_create"
        SUBSCRIPTION_CYCLE = "subscription_cycle"
        SUBSCRIPTION_RESUME = "subscription_resume"

    id = models.CharField(primary_key=True, max_length=40, default=new_invoice_id, editable=False)
    number = models.CharField(max_length=40, null=True, blank=True, unique=True)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="invoices")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    billing_reason = models.CharField(max_length=24, choices=Reason.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    subtotal = models.BigIntegerField(default=0, help_text="lines before exclusive tax")
    tax = models.BigIntegerField(default=0, help_text="all tax, inclusive and exclusive")
    total = models.BigIntegerField(default=0)
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    payment_id = models.CharField(max_length=40, blank=True, db_index=True)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    dunning_ends_at = models.DateTimeField(null=True, blank=True)
    retries_stopped = models.CharField(max_length=200, blank=True, help_text="why automatic retries stopped")
    access_token = models.CharField(max_length=64, default=new_access_token, unique=True, editable=False)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A period is invoiced at most once, whatever crashes or runs twice.
            models.UniqueConstraint(fields=["subscription", "period_start"], name="billing_invoice_period")
        ]

    def __str__(self) -> str:
        return f"{self.number or self.id} {self.status}"

    @property
    def next_payment_attempt(self) -> datetime | None:
        """When the next automatic payment attempt is due: none once retries stopped (then
        ``next_attempt_at`` only schedules the final action at the dunning window's end)."""
        return None if self.retries_stopped else self.next_attempt_at


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        SUBSCRIPTION = "subscription"
        PRORATION = "proration"
        CREDIT = "credit"
        TAX = "tax"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.CharField(max_length=300)
    quantity = models.PositiveIntegerField(default=1)
    unit_amount = models.BigIntegerField(null=True, blank=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tax_rate = models.ForeignKey(TaxRate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    inclusive = models.BooleanField(default=False, help_text="tax line: contained in the other lines")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount} {self.currency}"


class InvoiceAttempt(models.Model):
    """One try at collecting an invoice: a confirm of the invoice's payment through the mesh
    (which may try several gateways). Unique per (invoice, number): an attempt is made once."""

    class Status(models.TextChoices):
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROCESSING)
    payment_id = models.CharField(max_length=40)
    payment_method = models.CharField(max_length=255)
    payment_attempts_before = models.PositiveIntegerField(
        default=0, help_text="the payment's gateway attempts before this one started"
    )
    gateways = models.JSONField(default=list, blank=True, help_text="gateways tried, in order")
    gateway = models.CharField(max_length=100, blank=True, help_text="the one that answered last")
    decline_code = models.CharField(max_length=80, blank=True)
    advice_code = models.CharField(max_length=80, blank=True)
    action = models.CharField(max_length=20, blank=True, help_text="the decline table's action")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["invoice_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "number"], name="billing_invoice_attempt_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} {self.status}"


class DunningPolicy(models.Model):
    """The marketplace's retry policy (one row), applied by ``apps.billing.dunning`` (the rule, in
    full, is there): attempt n+1 is due ``schedule_days[n-1]`` days after the first attempt, never
    sooner than ``advice_wait_hours`` after an issuer's ``try_again_later``, at most
    ``max_attempts`` and never after ``window_days``; then ``final_action``."""

    class FinalAction(models.TextChoices):
        CANCEL = "cancel", "cancel the subscription (invoice uncollectible)"
        UNPAID = "unpaid", "mark the subscription unpaid (invoice stays open)"

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    max_attempts = models.PositiveIntegerField(default=8)
    window_days = models.PositiveIntegerField(default=14)
    schedule_days = models.JSONField(default=list, blank=True, help_text="days after the first attempt")
    advice_wait_hours = models.PositiveIntegerField(default=72)
    final_action = models.CharField(max_length=8, choices=FinalAction.choices, default=FinalAction.CANCEL)
    email_customers = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dunning policy"

    def __str__(self) -> str:
        return f"{self.max_attempts} attempts over {self.window_days} days, then {self.final_action}"


class InvoiceSequence(models.Model):
    """The marketplace's next invoice number (one row, locked while a number is taken)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    prefix = models.CharField(max_length=20, default="INV")
    next_number = models.PositiveBigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.prefix}-{self.next_number:06d} next"
