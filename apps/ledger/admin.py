"""Read-only ledger views for operators, with a balance-over-time chart per account."""

from __future__ import annotations

from django.contrib import admin
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin
from apps.core.money import format_amount
from apps.ledger.charts import line_chart_svg
from apps.ledger.models import Account, Balance, ChainLink, Entry, JournalTransaction, LedgerEvent, Seal
from apps.ledger.selectors import balance_history


class LedgerAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # counting millions of rows on every page view is slow


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("account", "side", "amount_display", "currency")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.currency)


@admin.register(LedgerEvent)
class LedgerEventAdmin(LedgerAdmin):
    list_display = ("public_id", "type", "stream", "version", "recorded_at", "sealed")
    list_filter = ("type", ("recorded_at", admin.DateFieldListFilter))
    search_fields = ("=public_id", "=stream", "=idempotency_key")
    date_hierarchy = "recorded_at"
    readonly_fields = (
        "public_id",
        "type",
        "stream",
        "version",
        "idempotency_key",
        "payload",
        "occurred_at",
        "recorded_at",
        "txid",
        "sealed",
    )
    inlines = [EntryInline]

    @admin.display(boolean=True)
    def sealed(self, obj):
        return ChainLink.objects.filter(event_id=obj.pk).exists()


@admin.register(JournalTransaction)
class JournalTransactionAdmin(LedgerAdmin):
    list_display = ("id", "event", "recorded_at")
    search_fields = ("=event__public_id", "=event__stream")
    list_filter = (("recorded_at", admin.DateFieldListFilter),)
    list_select_related = ("event",)
    readonly_fields = ("event", "recorded_at", "txid")
    inlines = [EntryInline]


@admin.register(Entry)
class EntryAdmin(LedgerAdmin):
    list_display = ("id", "event", "account", "side", "amount_display", "currency", "recorded_at")
    list_filter = ("currency", "side", "account__kind", ("recorded_at", admin.DateFieldListFilter))
    search_fields = ("=event__public_id", "=event__stream", "account__code")
    list_select_related = ("event", "account")
    raw_id_fields = ("account", "event", "transaction")

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.currency)


@admin.register(Account)
class AccountAdmin(LedgerAdmin):
    list_display = (
        "code",
        "currency",
        "type",
        "normal_side",
        "allow_negative",
        "balance_display",
        "chart_link",
    )
    list_filter = ("kind", "currency", "type")
    search_fields = ("code",)
    list_select_related = ("balance",)

    @admin.display(description="balance")
    def balance_display(self, obj):
        balance = getattr(obj, "balance", None)
        return format_amount(balance.balance, obj.currency) if balance else "-"

    @admin.display(description="chart")
    def chart_link(self, obj):
        return format_html(
            '<a href="{}">balance over time</a>', reverse("admin:ledger_account_chart", args=[obj.pk])
        )

    def get_urls(self):
        return [
            path("<int:pk>/chart/", self.admin_site.admin_view(self.chart_view), name="ledger_account_chart"),
            *super().get_urls(),
        ]

    def chart_view(self, request, pk: int):
        account = get_object_or_404(Account, pk=pk)
        bucket = request.GET.get("bucket", "day")
        if bucket not in ("hour", "day", "week", "month"):
            bucket = "day"
        points = balance_history(code=account.code, currency=account.currency, bucket=bucket)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{account.code} ({account.currency}): balance over time",
            "account": account,
            "bucket": bucket,
            "buckets": ["hour", "day", "week", "month"],
            "chart": mark_safe(line_chart_svg(points, currency=account.currency)),  # noqa: S308 - built from numbers
            "rows": [(t, format_amount(v, account.currency)) for t, v in reversed(points[-30:])],
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ledger/account_chart.html", context)


@admin.register(Balance)
class BalanceAdmin(LedgerAdmin):
    list_display = ("account", "balance_display", "debits", "credits", "updated_at")
    list_filter = ("account__currency", "account__kind")
    search_fields = ("account__code",)
    list_select_related = ("account",)

    @admin.display(description="balance")
    def balance_display(self, obj):
        return format_amount(obj.balance, obj.account.currency)


@admin.register(Seal)
class SealAdmin(LedgerAdmin):
    list_display = ("number", "event_count", "first_seq", "last_seq", "hash", "sealed_at")
