"""Operators: vendors (status, Stripe account, requirements in plain words, payout holds) and the
marketplace's commission policy."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin
from apps.core.money import format_amount
from apps.tenants.db import current_schema
from apps.vendors.connect import requirements_in_words
from apps.vendors.funds import FundsError, vendor_payout_create
from apps.vendors.models import CommissionPolicy, Payout, Transfer, TransferReversal, Vendor, VendorInvite
from apps.vendors.onboarding import vendor_invite_send
from apps.vendors.selectors import vendor_balances
from apps.vendors.services import VendorError, vendor_payouts_hold, vendor_payouts_release
from apps.vendors.splits import CommissionTerms, FeePolicy, SplitError, format_bps


def _check_terms(cleaned: dict, *, percent_field: str, fixed_field: str, fee_field: str) -> None:
    """Reuse the split rules' own validation so the admin refuses what a split would refuse;
    stores the fixed fees with lower-case currency codes."""
    percent = cleaned.get(percent_field)
    fixed = cleaned.get(fixed_field)
    try:
        terms = CommissionTerms(
            percent_bps=0 if percent is None else percent,
            fixed={} if fixed is None else fixed,
            fee_policy=FeePolicy(cleaned.get(fee_field) or FeePolicy.PLATFORM),
        )
    except SplitError as exc:
        field = {"percent_bps": percent_field, "fee_policy": fee_field}.get(exc.param or "", fixed_field)
        raise forms.ValidationError({field: exc.message}) from None
    if fixed is not None:
        cleaned[fixed_field] = dict(terms.fixed)


class TenantOnlyEditableAdminMixin(TenantOnlyAdminMixin):
    """Editable models of marketplace schemas: on the public host, not even a superuser may add,
    change or delete them (their tables do not exist there)."""

    def has_add_permission(self, request, *args):
        return current_schema() != "public" and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request, obj=None):
        return current_schema() != "public" and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request, obj=None):
        return current_schema() != "public" and super().has_delete_permission(request, obj)  # type: ignore[misc]


class VendorForm(forms.ModelForm):
    class Meta:
        model = Vendor
        fields = [
            "name",
            "email",
            "country",
            "default_currency",
            "status",
            "metadata",
            "payout_schedule",
            "payout_minimum",
            "payouts_held",
            "commission_percent_bps",
            "commission_fixed",
            "fee_policy",
        ]

    def clean(self):
        cleaned = super().clean() or {}
        _check_terms(
            cleaned,
            percent_field="commission_percent_bps",
            fixed_field="commission_fixed",
            fee_field="fee_policy",
        )
        return cleaned


class VendorInviteInline(admin.TabularInline):
    model = VendorInvite
    extra = 0
    fields = ("created_at", "expires_at", "used_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # invites are issued by vendor_invite_create (the raw token is shown once)


@admin.register(Vendor)
class VendorAdmin(TenantOnlyEditableAdminMixin, admin.ModelAdmin):
    form = VendorForm
    list_display = (
        "name",
        "email",
        "status",
        "default_currency",
        "payouts_held",
        "stripe_account_id",
        "created_at",
    )
    list_filter = ("status", "payouts_held", "default_currency", "payout_schedule", "country")
    search_fields = ("id", "name", "email", "stripe_account_id")
    readonly_fields = (
        "id",
        "stripe_account_id",
        "charges_enabled",
        "payouts_enabled",
        "requirements_in_words",
        "payout_minimum_display",
        "balances",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "name", "email", "country", "default_currency", "status", "metadata")}),
        (
            "Stripe account",
            {"fields": ("stripe_account_id", "charges_enabled", "payouts_enabled", "requirements_in_words")},
        ),
        (
            "Payouts",
            {
                "fields": (
                    "balances",
                    "payout_schedule",
                    "payout_minimum",
                    "payout_minimum_display",
                    "payouts_held",
                )
            },
        ),
        (
            "Commission (empty fields use the marketplace's policy)",
            {"fields": ("commission_percent_bps", "commission_fixed", "fee_policy")},
        ),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    inlines = [VendorInviteInline]
    actions = ["hold_payouts", "release_payouts", "pay_out_now", "send_onboarding_invite"]

    @admin.display(description="balances (from the ledger)")
    def balances(self, obj: Vendor) -> str:
        if not obj.pk:
            return "-"
        figures = vendor_balances(vendor_id=obj.pk)
        rows = [
            (stage, ", ".join(format_amount(m["amount"], m["currency"]) for m in figures[stage]) or "0")
            for stage in ("available", "pending", "held")
        ]
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.action(description="Pay out the available balance now")
    def pay_out_now(self, request, queryset):
        made, refused = 0, []
        for vendor in queryset:
            try:
                made += len(vendor_payout_create(vendor_id=vendor.pk, manual=True))
            except FundsError as exc:
                refused.append(str(exc))
        self.message_user(request, f"{made} payout(s) started", messages.SUCCESS)
        if refused:
            self.message_user(request, "; ".join(refused), messages.WARNING)

    @admin.display(description="Stripe needs")
    def requirements_in_words(self, obj: Vendor) -> str:
        lines = requirements_in_words(obj.requirements)
        if not lines:
            return "nothing"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((line,) for line in lines)))

    @admin.display(description="payout minimum")
    def payout_minimum_display(self, obj: Vendor) -> str:
        try:
            return format_amount(obj.payout_minimum, obj.default_currency)
        except Exception:  # an unsaved or half-filled vendor
            return "-"

    @admin.action(description="Hold payouts")
    def hold_payouts(self, request, queryset):
        self._each_vendor(request, queryset, vendor_payouts_hold, "payouts held")

    @admin.action(description="Release payouts")
    def release_payouts(self, request, queryset):
        self._each_vendor(request, queryset, vendor_payouts_release, "payouts released")

    def _each_vendor(self, request, queryset, act: Callable[..., object], done: str) -> None:
        """``act(vendor=...)`` for each selected vendor, then "<done> for <n> vendor(s)"."""
        count = 0
        for vendor in queryset:
            act(vendor=vendor)
            count += 1
        self.message_user(request, f"{done} for {count} vendor(s)", messages.SUCCESS)

    @admin.action(description="Send onboarding invite")
    def send_onboarding_invite(self, request, queryset):
        """Email each selected vendor a new single-use onboarding link (disabled ones are skipped)."""
        sent, skipped = 0, []
        for vendor in queryset:
            try:
                vendor_invite_send(vendor=vendor, request_host=request.get_host())
                sent += 1
            except VendorError as exc:
                skipped.append(f"{vendor.id}: {exc.message}")
        self.message_user(request, f"onboarding invite sent to {sent} vendor(s)", messages.SUCCESS)
        if skipped:
            self.message_user(request, "not sent: " + "; ".join(skipped), messages.WARNING)


class CommissionPolicyForm(forms.ModelForm):
    class Meta:
        model = CommissionPolicy
        fields = ["percent_bps", "fixed", "fee_policy", "dispute_policy"]

    def clean(self):
        cleaned = super().clean() or {}
        _check_terms(cleaned, percent_field="percent_bps", fixed_field="fixed", fee_field="fee_policy")
        return cleaned


@admin.register(CommissionPolicy)
class CommissionPolicyAdmin(TenantOnlyEditableAdminMixin, admin.ModelAdmin):
    form = CommissionPolicyForm
    list_display = ("__str__", "percent", "fee_policy", "updated_at")

    @admin.display(description="percent")
    def percent(self, obj: CommissionPolicy) -> str:
        return format_bps(obj.percent_bps)

    def has_add_permission(self, request, *args):
        # One policy per marketplace, created when the marketplace is provisioned.
        return super().has_add_permission(request, *args) and not CommissionPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnlyAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Money records: viewed here, changed only by the funds flow."""

    list_filter = ("status", "simulated", "currency")
    date_hierarchy = "created_at"

    @admin.display(description="amount")
    def money(self, obj: Transfer | Payout | TransferReversal) -> str:
        return format_amount(obj.amount, obj.currency)


@admin.register(Transfer)
class TransferAdmin(_ReadOnlyAdmin):
    list_display = (
        "created_at",
        "id",
        "vendor",
        "payment_id",
        "money",
        "status",
        "stripe_transfer_id",
        "simulated",
    )
    search_fields = ("=id", "=payment_id", "=vendor__id", "vendor__name", "=stripe_transfer_id")
    list_select_related = ("vendor",)


@admin.register(Payout)
class PayoutAdmin(_ReadOnlyAdmin):
    list_display = (
        "created_at",
        "id",
        "vendor",
        "money",
        "status",
        "arrival_date",
        "stripe_payout_id",
        "simulated",
    )
    search_fields = ("=id", "=vendor__id", "vendor__name", "=stripe_payout_id")
    list_select_related = ("vendor",)


@admin.register(TransferReversal)
class TransferReversalAdmin(_ReadOnlyAdmin):
    list_display = (
        "created_at",
        "id",
        "transfer",
        "money",
        "status",
        "refund_id",
        "dispute_id",
        "stripe_reversal_id",
        "failure_message",
    )
    search_fields = ("=id", "=transfer__id", "=refund_id", "=dispute_id", "=stripe_reversal_id")
    list_select_related = ("transfer",)
