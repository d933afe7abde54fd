"""Operators' view of billing: catalog, subscriptions, invoices (with lines and attempts), the
dunning policy, and the recovery analytics page (Invoices -> "recovery analytics")."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from apps.billing.charts import recovery_chart_svg
from apps.billing.models import (
    DunningPolicy,
    Invoice,
    InvoiceAttempt,
    InvoiceLine,
    Price,
    Product,
    Subscription,
    TaxRate,
)
from apps.billing.selectors import recovery_report
from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin
from apps.core.money import format_amount


class PriceInline(TenantOnlyAdminMixin, admin.TabularInline):
    model = Price
    fields = ("id", "nickname", "amounts", "interval", "interval_count", "trial_days", "active")
    readonly_fields = ("id", "amounts", "interval", "interval_count", "trial_days")
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Product)
class ProductAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "name", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("id", "name")
    inlines = [PriceInline]


@admin.register(Price)
class PriceAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "product",
        "nickname",
        "amounts",
        "interval",
        "interval_count",
        "trial_days",
        "active",
    )
    list_filter = ("active", "interval")
    search_fields = ("id", "nickname", "product__name")

    def get_readonly_fields(self, request, obj=None):
        # amounts and interval never change once subscriptions may rely on them
        return ("amounts", "interval", "interval_count", "product") if obj else ()


@admin.register(TaxRate)
class TaxRateAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "display_name", "jurisdiction", "percentage", "inclusive", "active")
    list_filter = ("inclusive", "active", "jurisdiction")


@admin.register(Subscription)
class SubscriptionAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "customer_id",
        "price",
        "currency",
        "quantity",
        "status",
        "current_period_end",
        "cancel_at_period_end",
    )
    list_filter = ("status", "currency", "cancel_at_period_end")
    search_fields = ("id", "customer__id", "customer__email", "vendor_id")
    date_hierarchy = "created_at"


class InvoiceLineInline(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = InvoiceLine
    fields = ("kind", "description", "quantity", "unit_amount", "amount", "currency", "tax_rate", "inclusive")
    readonly_fields = fields
    extra = 0


class InvoiceAttemptInline(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = InvoiceAttempt
    fields = (
        "number",
        "status",
        "payment_id",
        "payment_method",
        "gateways",
        "decline_code",
        "advice_code",
        "action",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    extra = 0


@admin.register(Invoice)
class InvoiceAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "number",
        "id",
        "subscription_id",
        "status",
        "total_display",
        "attempt_count",
        "next_attempt_at",
        "period_start",
    )
    list_filter = ("status", "currency", "billing_reason")
    search_fields = ("id", "number", "subscription__id", "customer__id", "payment_id")
    date_hierarchy = "period_start"
    inlines = [InvoiceLineInline, InvoiceAttemptInline]
    change_list_template = "billing/admin_invoice_changelist.html"

    @admin.display(description="total")
    def total_display(self, obj: Invoice) -> str:
        return format_amount(obj.total, obj.currency)

    def get_urls(self):
        return [
            path("recovery/", self.admin_site.admin_view(self.recovery_view), name="billing_recovery"),
            *super().get_urls(),
        ]

    def recovery_view(self, request):
        try:
            months = max(1, min(120, int(request.GET.get("months", "12"))))
        except ValueError:
            months = 12
        report = recovery_report(months=months)
        context = {
            **self.admin_site.each_context(request),
            "title": "Dunning recovery",
            "report": report,
            "months": months,
            "chart": mark_safe(recovery_chart_svg(report["by_month"])),  # noqa: S308 - built from numbers and escaped labels
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "billing/admin_recovery.html", context)

    def changelist_view(self, request, extra_context=None):
        link = format_html('<a href="{}">recovery analytics</a>', reverse("admin:billing_recovery"))
        return super().changelist_view(request, {**(extra_context or {}), "recovery_link": link})


@admin.register(DunningPolicy)
class DunningPolicyAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "max_attempts",
        "window_days",
        "schedule_days",
        "advice_wait_hours",
        "final_action",
    )

    def has_add_permission(self, request, *args):
        return not DunningPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False
