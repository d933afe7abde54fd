"""Operators: gateway accounts with live breaker state and health, editable routing and decline
rules, read-only payments, attempts and refunds (with capture, cancel and refund actions), and the
inbound events the processors sent (read-only, "reprocess")."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncMinute
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin
from apps.core.money import format_amount
from apps.ledger.models import LedgerEvent
from apps.payments.breaker import CircuitBreaker
from apps.payments.models import (
    DeclineRule,
    Dispute,
    GatewayAccount,
    InboundEvent,
    LateCharge,
    PaymentAttempt,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodCredential,
    Refund,
    RoutingRule,
)
from apps.payments.news import inbound_events_reprocess
from apps.payments.services import PaymentError, payment_cancel, payment_capture, payment_refund


class GatewayAccountForm(forms.ModelForm):
    credentials_json = forms.CharField(
        label="Credentials (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Write-only: encrypted at rest, never shown again. Leave empty to keep the current ones.",
    )

    class Meta:
        model = GatewayAccount
        fields = ["name", "kind", "enabled", "settings"]

    def clean_credentials_json(self):
        raw = self.cleaned_data["credentials_json"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("credentials must be a JSON object")
        return value

    def save(self, commit=True):
        account = super().save(commit=False)
        if self.cleaned_data.get("credentials_json") is not None:
            account.credentials = self.cleaned_data["credentials_json"]
        if commit:
            account.save()
        return account


@admin.register(GatewayAccount)
class GatewayAccountAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    form = GatewayAccountForm
    list_display = ("name", "kind", "enabled", "breaker", "recent_success", "has_credentials")
    list_filter = ("kind", "enabled")
    actions = ["reset_breaker"]
    change_list_template = "admin/payments/gatewayaccount/change_list.html"

    @admin.display(description="circuit")
    def breaker(self, obj):
        s = CircuitBreaker(obj.name).state()
        return f"{s.state} ({s.window_errors} errors / {s.window_ok + s.window_errors} calls, 30 s)"

    @admin.display(description="last hour")
    def recent_success(self, obj):
        since = timezone.now() - timedelta(hours=1)
        stats = obj.attempts.filter(created_at__gte=since).aggregate(
            n=Count("id"),
            ok=Count("id", filter=Q(status__in=["captured", "authorized"])),
            lat=Avg("latency_ms"),
        )
        if not stats["n"]:
            return "no attempts"
        return f"{stats['ok']}/{stats['n']} approved, {stats['lat'] or 0:.0f} ms avg"

    @admin.display(boolean=True, description="credentials")
    def has_credentials(self, obj):
        return bool(obj.credentials_encrypted)

    @admin.action(description="Reset the circuit breaker")
    def reset_breaker(self, request, queryset):
        for account in queryset:
            CircuitBreaker(account.name).reset()
        self.message_user(request, f"reset {queryset.count()} breaker(s)")

    def get_urls(self):
        return [
            path("health/", self.admin_site.admin_view(self.health_view), name="payments_gateway_health"),
            *super().get_urls(),
        ]

    def health_view(self, request):
        """Attempts per gateway per 5 minutes over the last 6 hours: approved, declined, errors."""
        since = timezone.now() - timedelta(hours=6)
        rows = (
            PaymentAttempt.objects.filter(created_at__gte=since)
            .annotate(t=TruncMinute("created_at"))
            .values("gateway_account__name", "t")
            .annotate(
                ok=Count("id", filter=Q(status__in=["captured", "authorized"])),
                declined=Count("id", filter=Q(status="declined")),
                errors=Count("id", filter=Q(status__in=["failed", "unknown"])),
                latency=Avg("latency_ms"),
            )
            .order_by("gateway_account__name", "t")
        )
        series: dict[str, list[Any]] = {}
        for r in rows:
            series.setdefault(r["gateway_account__name"], []).append(r)
        charts = []
        for name, points in series.items():
            charts.append(
                {
                    "name": name,
                    "svg": _bars_svg(points),
                    "state": CircuitBreaker(name).state(),
                    "total": sum(p["ok"] + p["declined"] + p["errors"] for p in points),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Gateway health (last 6 hours)",
            "charts": charts,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payments/gateway_health.html", context)


def _bars_svg(points: list[dict], width: int = 860, height: int = 160) -> str:
    n = max(1, len(points))
    peak = max(1, *(p["ok"] + p["declined"] + p["errors"] for p in points))
    bar_w = max(1.0, (width - 20) / n)
    parts = []
    for i, p in enumerate(points):
        x = 10 + i * bar_w
        y = height - 20
        for value, colour in ((p["ok"], "#16a34a"), (p["declined"], "#f59e0b"), (p["errors"], "#dc2626")):
            h = value / peak * (height - 30)
            if h:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y - h:.1f}" width="{max(1.0, bar_w - 1):.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{p["t"]:%H:%M} {value}</title></rect>'
                )
            y -= h
    legend = (
        f'<text x="10" y="{height - 4}" font-size="11" fill="#16a34a">approved</text>'
        f'<text x="80" y="{height - 4}" font-size="11" fill="#f59e0b">declined</text>'
        f'<text x="150" y="{height - 4}" font-size="11" fill="#dc2626">errors / unknown</text>'
    )
    return mark_safe(  # noqa: S308 - built from numbers and fixed strings
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%">'
        f"{''.join(parts)}{legend}</svg>"
    )


@admin.register(RoutingRule)
class RoutingRuleAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "priority",
        "name",
        "enabled",
        "mode",
        "currencies",
        "card_countries",
        "card_brands",
        "candidates",
        "prefer_success_rate",
    )
    list_editable = ("enabled",)
    list_display_links = ("name",)


@admin.register(DeclineRule)
class DeclineRuleAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("gateway_kind", "code", "advice_code", "action", "note")
    list_filter = ("action", "gateway_kind")
    search_fields = ("code", "advice_code")
    list_editable = ("action",)


class AttemptInline(admin.TabularInline):
    model = PaymentAttempt
    fields = (
        "id",
        "gateway_account",
        "status",
        "outcome",
        "decline_code",
        "advice_code",
        "reference",
        "latency_ms",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PaymentIntent)
class PaymentIntentAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "amount_display", "status", "gateway_account", "refunded_display", "created_at")
    list_filter = ("status", "currency", "gateway_account", "capture_method")
    search_fields = ("=id", "customer_id")
    date_hierarchy = "created_at"
    inlines = [AttemptInline]
    # Money in major units with its currency; the routing in words; the raw JSON folded away.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "status",
                    "amount_display",
                    "received_display",
                    "capturable_display",
                    "refunded_display",
                    "capture_method",
                    "gateway_account",
                    "payment_method",
                    "card_display",
                    "customer_id",
                    "description",
                    "metadata",
                    "off_session",
                    "recurring",
                    "return_url",
                    "authentication_link_sent_at",
                    "setup_future_usage",
                    "saved_payment_method",
                    "has_splits",
                    "last_error",
                    "next_action",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        ("Routing", {"fields": ["routing_reasons"]}),
        ("Timeline", {"fields": ["timeline"]}),
        ("Raw", {"classes": ["collapse"], "fields": ["routing", "card", "splits"]}),
    ]
    readonly_fields = [
        "timeline",
        "routing_reasons",
        "received_display",
        "capturable_display",
        "refunded_display",
        "card_display",
        "amount_display",
        *[f.name for f in PaymentIntent._meta.fields],
    ]

    @admin.display(description="timeline")
    def timeline(self, obj):
        """Every ledger event of this payment, oldest first: what happened, when, and what it posted."""
        events = (
            LedgerEvent.objects.filter(stream=obj.pk).order_by("version").prefetch_related("entries__account")
        )
        rows = []
        for e in events:
            detail = ", ".join(
                f"{'Dr' if en.side == 'D' else 'Cr'} {en.account.code} {format_amount(en.amount, en.currency)}"
                for en in e.entries.all()
            )
            extra = {
                k: v
                for k, v in e.payload.items()
                if k in ("attempt", "gateway_account", "decline_code", "advice_code", "action", "refund")
            }
            rows.append(
                (
                    e.recorded_at.strftime("%H:%M:%S.%f")[:-3],
                    e.type,
                    " ".join(f"{k}={v}" for k, v in extra.items() if v),
                    detail,
                )
            )
        # One block per event, its lines wrapping: readable at any width, a phone's included.
        return format_html_join(
            "",
            '<div style="padding:.35em 0;border-bottom:1px solid var(--hairline-color, #e5e7eb)">'
            "<span>{}</span> <strong>{}</strong>"
            '<div style="overflow-wrap:anywhere">{}</div><div style="overflow-wrap:anywhere">{}</div></div>',
            rows,
        )

    @admin.display(description="routing")
    def routing_reasons(self, obj):
        decision = (obj.routing or {}).get("decision") or {}
        items = [
            *decision.get("reasons", []),
            *(f"{g}: {why}" for g, why in decision.get("skipped", {}).items()),
        ]
        items += [
            f"{s['gateway']}: {s['reason']} (this round)"
            for s in (obj.routing or {}).get("skipped", [])
            if f"{s['gateway']}: {s['reason']}" not in items
        ]
        items += [
            f"{attempt}: charged through the {via.get('vault')} vault of {via.get('from')}"
            for attempt, via in ((obj.routing or {}).get("via") or {}).items()
        ]
        tried = (obj.routing or {}).get("tried", [])
        return format_html(
            "<div>tried: {}</div><ul>{}</ul>",
            " → ".join(tried) or "-",
            format_html_join("", "<li>{}</li>", ((i,) for i in items)),
        )

    @admin.display(description="amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.currency)

    @admin.display(description="received")
    def received_display(self, obj):
        return format_amount(obj.amount_received, obj.currency)

    @admin.display(description="capturable")
    def capturable_display(self, obj):
        return format_amount(obj.amount_capturable, obj.currency)

    @admin.display(description="refunded")
    def refunded_display(self, obj):
        return format_amount(obj.amount_refunded, obj.currency)

    @admin.display(description="card")
    def card_display(self, obj):
        card = obj.card or {}
        if not card:
            return "-"
        return f"{card.get('brand', '')} •••• {card.get('last4', '')} ({card.get('funding', '')}, {card.get('country', '')})"

    def get_actions(self, request):
        return {
            name: (func, name, desc)
            for name, func, desc in [
                ("capture", type(self).capture, "Capture (full amount)"),
                ("cancel", type(self).cancel, "Cancel"),
                ("refund", type(self).refund, "Refund what is left"),
            ]
        }

    def _each(self, request, queryset, fn, label):
        done = 0
        for intent in queryset:
            try:
                fn(intent_id=intent.pk)
                done += 1
            except PaymentError as exc:
                self.message_user(request, f"{intent.pk}: {exc}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{label} {done} payment(s)")

    def capture(self, request, queryset):
        self._each(request, queryset, payment_capture, "captured")

    def cancel(self, request, queryset):
        self._each(request, queryset, payment_cancel, "canceled")

    def refund(self, request, queryset):
        self._each(request, queryset, payment_refund, "refunded")


@admin.register(Refund)
class RefundAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "intent", "amount", "currency", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "=intent__id")


@admin.register(Dispute)
class DisputeAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "id", "intent", "gateway_account", "amount", "currency", "reason", "status")
    list_filter = ("status", "gateway_account", "reason")
    search_fields = ("=id", "=intent__id", "=reference")
    date_hierarchy = "created_at"


@admin.register(LateCharge)
class LateChargeAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Money a gateway took on an attempt we had closed: reversed automatically; the ones a
    gateway refused to reverse wait here for an operator (``needs_operator``)."""

    list_display = (
        "created_at",
        "id",
        "intent",
        "gateway_account",
        "money",
        "captured",
        "status",
        "found_by",
    )
    list_filter = ("status", "gateway_account")
    search_fields = ("=id", "=intent__id", "=attempt__id", "=reference")
    date_hierarchy = "created_at"

    @admin.display(description="amount")
    def money(self, obj: LateCharge) -> str:
        return format_amount(obj.amount, obj.currency)


@admin.register(InboundEvent)
class InboundEventAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "received_at",
        "gateway_account",
        "type",
        "event_id",
        "state",
        "attempts",
        "processed_at",
        "result",
    )
    list_filter = ("state", "type", "gateway_account", "provider")
    search_fields = ("=event_id", "result", "last_error")
    date_hierarchy = "received_at"
    list_select_related = ("gateway_account",)
    actions = ["reprocess"]
    fields = (
        "gateway_account",
        "provider",
        "event_id",
        "type",
        "state",
        "attempts",
        "occurred_at",
        "received_at",
        "processed_at",
        "result",
        "last_error",
        "payload_pretty",
        "body",
    )
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def has_reprocess_permission(self, request):
        return self.has_view_permission(request)

    @admin.action(
        description="Reprocess (apply again; harmless if already applied)", permissions=["reprocess"]
    )
    def reprocess(self, request, queryset):
        queued = inbound_events_reprocess(inbound_event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"queued {queued} event(s) for processing")


class PaymentMethodCredentialInline(admin.TabularInline):
    """Which gateway accounts can charge the method; the reference only masked."""

    model = PaymentMethodCredential
    extra = 0
    can_delete = False
    fields = ("gateway_account", "reference", "created_at")
    readonly_fields = fields

    @admin.display(description="reference")
    def reference(self, obj):
        return f"...{obj.reference_last4}"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PaymentMethod)
class PaymentMethodAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "card_display", "customer_id", "gateways", "created_at")
    list_filter = ("brand", "credentials__gateway_account")
    search_fields = ("=id", "=customer__id", "=fingerprint", "last4")
    date_hierarchy = "created_at"
    inlines = [PaymentMethodCredentialInline]
    readonly_fields = [f.name for f in PaymentMethod._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("credentials__gateway_account")

    @admin.display(description="expiry")
    def expiry(self, obj):
        return f"{obj.exp_month:02d}/{obj.exp_year}" if obj.exp_month and obj.exp_year else "-"

    @admin.display(description="card", ordering="brand")
    def card_display(self, obj):
        return f"{obj.brand or 'card'} •••• {obj.last4 or '----'} · {self.expiry(obj)}"

    @admin.display(description="customer", ordering="customer_id")
    def customer_id(self, obj):
        return obj.customer_id or "-"

    @admin.display(description="can be charged at")
    def gateways(self, obj):
        return ", ".join(c.gateway_account.name for c in obj.credentials.all()) or "-"
