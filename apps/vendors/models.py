"""Vendors (``ven_...``), the marketplace's commission policy and single-use vendor invites.

Money fields are integers in minor units; per-currency maps are JSON objects keyed by the
lower-case ISO 4217 code (``{"usd": 30, "jpy": 50}``). The pure split rules live in ``splits``;
the models only hold the terms (``Vendor.split_terms``, ``CommissionPolicy.terms``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.ids import new_id
from apps.core.money import format_amount
from apps.vendors.splits import CommissionTerms, FeePolicy, VendorTerms, format_bps

DEFAULT_INVITE_TTL_DAYS = 7


def new_vendor_id() -> str:
    return new_id("ven_")


def invite_expiry() -> datetime:
    """Now plus ``settings.VENDOR_INVITE_TTL_DAYS`` (default 7 days)."""
    days = getattr(settings, "VENDOR_INVITE_TTL_DAYS", DEFAULT_INVITE_TTL_DAYS)
    return timezone.now() + timedelta(days=days)


class Vendor(models.Model):
    class Status(models.TextChoices):
        INVITED = "invited"
        ONBOARDING = "onboarding"
        ACTIVE = "active"
        RESTRICTED = "restricted", "restricted (Stripe needs more information)"
        DISABLED = "disabled", "disabled (by an operator)"

    class PayoutSchedule(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        MANUAL = "manual"

    id = models.CharField(primary_key=True, max_length=40, default=new_vendor_id, editable=False)
    email = models.EmailField()
    name = models.CharField(max_length=256)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. US")
    default_currency = models.CharField(max_length=3, help_text="ISO 4217, lower case, e.g. usd")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INVITED, db_index=True)
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    requirements = models.JSONField(
        default=dict,
        blank=True,
        help_text="From Stripe: {currently_due: [...], past_due: [...], disabled_reason: ...}",
    )
    stripe_account_id = models.CharField(max_length=255, blank=True, db_index=True)
    payout_schedule = models.CharField(
        max_length=10, choices=PayoutSchedule.choices, default=PayoutSchedule.WEEKLY
    )
    payout_minimum = models.BigIntegerField(
        default=0, help_text="Minor units of the default currency; smaller balances wait."
    )
    commission_percent_bps = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Overrides the marketplace's percentage, in basis points (1000 = 10%). Empty: default.",
    )
    commission_fixed = models.JSONField(
        null=True,
        blank=True,
        help_text='Overrides the marketplace\'s fixed fee per currency, e.g. {"usd": 30}. Empty: default.',
    )
    fee_policy = models.CharField(
        max_length=10,
        choices=FeePolicy.choices(),
        null=True,
        blank=True,
        help_text="Who bears processor fees on this vendor's sales. Empty: the marketplace's policy.",
    )
    payouts_held = models.BooleanField(default=False, help_text="An operator's hold: no payouts while set.")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["email"], name="vendors_email")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(payout_minimum__gte=0), name="vendors_payout_minimum_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(commission_percent_bps__isnull=True)
                | models.Q(commission_percent_bps__lte=10_000),
                name="vendors_commission_percent_at_most_100",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def payable_account(self) -> str:
        """The vendor's ledger account code (a protected liability, per currency)."""
        return f"vendor_payable:{self.id}"

    def split_terms(self) -> VendorTerms:
        """What ``splits`` needs to know about this vendor (no database access)."""
        return VendorTerms(
            vendor_id=self.id,
            status=self.status,
            currency=self.default_currency,
            percent_bps=self.commission_percent_bps,
            fixed=self.commission_fixed,
            fee_policy=FeePolicy(self.fee_policy) if self.fee_policy else None,
        )


class CommissionPolicy(models.Model):
    """The marketplace's default commission: one row per marketplace schema (``singleton`` is
    unique and always True). Vendors may override any part of it."""

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    percent_bps = models.PositiveIntegerField(
        default=1000, help_text="Basis points of each vendor's part (1000 = 10%)."
    )
    fixed = models.JSONField(
        default=dict,
        blank=True,
        help_text='Fixed fee per vendor part, per currency in minor units, e.g. {"usd": 30}.',
    )
    fee_policy = models.CharField(
        max_length=10,
        choices=FeePolicy.choices(),
        default=FeePolicy.PLATFORM.value,
        help_text="Who bears processor fees: the platform, the vendor, or both pro rata.",
    )
    dispute_policy = models.CharField(
        max_length=10,
        choices=[("vendor", "the vendors of a split payment"), ("platform", "the platform")],
        default="vendor",
        help_text="Who bears a chargeback on a split payment (payments without a split: the platform).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "commission policy"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(singleton=True), name="vendors_commission_policy_singleton"
            ),
            models.CheckConstraint(
                condition=models.Q(percent_bps__lte=10_000), name="vendors_policy_percent_at_most_100"
            ),
        ]

    def __str__(self) -> str:
        fixed = ", ".join(format_amount(v, c) for c, v in sorted((self.fixed or {}).items()))
        return f"{format_bps(self.percent_bps)} commission" + (f" + {fixed}" if fixed else "")

    def terms(self) -> CommissionTerms:
        return CommissionTerms(
            percent_bps=self.percent_bps, fixed=self.fixed or {}, fee_policy=FeePolicy(self.fee_policy)
        )


class VendorInvite(models.Model):
    """A single-use onboarding invite. Only the SHA-256 of the token is stored; the raw token is
    shown once, in the link sent to the vendor."""

    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="invites")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField(default=invite_expiry)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invite for {self.vendor_id}"

    def usable(self, at: datetime | None = None) -> bool:
        return self.used_at is None and (at or timezone.now()) < self.expires_at


def new_transfer_id() -> str:
    return new_id("tr_")


def new_payout_id() -> str:
    return new_id("po_")


class PaymentSplit(models.Model):
    """A payment's split plan (validated when the payment was created) and, once captured, its
    allocation; refunds unwind it (``refunds``: the ``RefundUnwind`` of each, in order)."""

    payment_id = models.CharField(primary_key=True, max_length=40)
    currency = models.CharField(max_length=3)
    plan = models.JSONField(help_text="splits.SplitPlan.as_dict()")
    allocation = models.JSONField(null=True, blank=True, help_text="splits.Allocation.as_dict()")
    refunds = models.JSONField(default=list, blank=True, help_text="[splits.RefundUnwind.as_dict()]")
    transfer_group = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"split of {self.payment_id}"


class Transfer(models.Model):
    """Money moved from the platform to a vendor's connected account for one payment."""

    class Status(models.TextChoices):
        PENDING = "pending"  # to be sent (a worker sends it)
        HELD = "held"  # the vendor cannot be paid yet (payouts not enabled, or held)
        # Asked of Stripe; its answer is not applied yet (in flight, lost, or not committed):
        # may have happened, so it is resolved from Stripe, never assumed either way.
        SENDING = "sending"
        PAID = "paid"  # in the vendor's connected account
        FAILED = "failed"  # Stripe refused it
        CANCELED = "canceled"  # nothing left to transfer (refunded before it was sent)

    id = models.CharField(primary_key=True, max_length=40, default=new_transfer_id, editable=False)
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="transfers")
    payment_id = models.CharField(max_length=40, db_index=True)
    amount = models.BigIntegerField(help_text="what the vendor is owed for this payment (minor units)")
    amount_recovered = models.BigIntegerField(
        default=0, help_text="kept back to cover the vendor's negative balance (earlier refunds, disputes)"
    )
    amount_reversed = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    transfer_group = models.CharField(max_length=64, blank=True)
    source_transaction = models.CharField(max_length=255, blank=True)
    stripe_transfer_id = models.CharField(max_length=255, blank=True)
    simulated = models.BooleanField(
        default=False, help_text="Stripe is not configured: moved in the ledger only"
    )
    failure_message = models.CharField(max_length=500, blank=True)
    sending_since = models.DateTimeField(
        null=True, blank=True, help_text="when it was first asked of Stripe (status sending until answered)"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["payment_id", "vendor"], name="vendors_transfer_once_per_payment")
        ]

    def __str__(self) -> str:
        return f"{self.id} {format_amount(self.amount, self.currency)} to {self.vendor_id} [{self.status}]"

    @property
    def sent(self) -> int:
        """What goes to the connected account: the amount less what is kept back for debts."""
        return self.amount - self.amount_recovered


class Payout(models.Model):
    """Money paid from a vendor's connected account to its bank."""

    class Status(models.TextChoices):
        PENDING = "pending"  # requested
        PAID = "paid"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, default=new_payout_id, editable=False)
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="payouts")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    stripe_payout_id = models.CharField(max_length=255, blank=True)
    simulated = models.BooleanField(default=False)
    arrival_date = models.DateField(null=True, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    sending_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="when it was first asked of Stripe; pending with no Stripe id since then: its "
        "answer is not applied yet (resolved from Stripe)",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.id} {format_amount(self.amount, self.currency)} to {self.vendor_id} [{self.status}]"


def new_reversal_id() -> str:
    return new_id("trr_")


class TransferReversal(models.Model):
    """Money taken back from a vendor's connected account, for one refund or lost dispute of the
    transfer's payment (one row per cause: ``cause`` is the refund's or dispute's id)."""

    class Status(models.TextChoices):
        PENDING = "pending"  # to be sent (a worker sends it)
        SENDING = "sending"  # asked of Stripe; its answer is not applied yet (resolved from Stripe)
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # Stripe refused it: the vendor keeps the money (operators see it)
        CANCELED = "canceled"  # its transfer never reached the connected account

    id = models.CharField(primary_key=True, max_length=40, default=new_reversal_id, editable=False)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="reversals")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    refund_id = models.CharField(max_length=40, blank=True)
    dispute_id = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    stripe_reversal_id = models.CharField(max_length=255, blank=True)
    simulated = models.BooleanField(default=False)
    failure_message = models.CharField(max_length=500, blank=True)
    sending_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["transfer", "refund_id", "dispute_id"], name="vendors_reversal_once_per_cause"
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} {format_amount(self.amount, self.currency)} of {self.transfer_id} [{self.status}]"

    @property
    def cause(self) -> dict[str, str]:
        """``{"refund": id}`` or ``{"dispute": id}``: what the reversal is for (its Stripe metadata)."""
        return {"refund": self.refund_id} if self.refund_id else {"dispute": self.dispute_id}

    @property
    def cause_id(self) -> str:
        return self.refund_id or self.dispute_id


DEFAULT_LOGIN_TTL_MINUTES = 15


def login_token_expiry() -> datetime:
    """Now plus ``settings.VENDOR_LOGIN_TTL_MINUTES`` (default 15 minutes)."""
    minutes = getattr(settings, "VENDOR_LOGIN_TTL_MINUTES", DEFAULT_LOGIN_TTL_MINUTES)
    return timezone.now() + timedelta(minutes=minutes)


class VendorLoginToken(models.Model):
    """A single-use magic link into the vendor dashboard. Only the SHA-256 of the token is
    stored; the raw token is in the emailed link only."""

    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="login_tokens")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField(default=login_token_expiry)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"login link for {self.vendor_id}"

    def usable(self, at: datetime | None = None) -> bool:
        return self.used_at is None and (at or timezone.now()) < self.expires_at
