from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from apps.checkout.models import CheckoutSession
from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin
from apps.core.money import format_amount


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Sessions change only through the checkout services (page, API, expiry job). Money reads in
    major units with its currency; the payment links to its page."""

    list_display = ("id", "status", "mode", "amount_display", "payment_link", "expires_at", "created_at")
    list_filter = ("status", "mode")
    search_fields = ("id", "payment_id", "customer_id", "payment_method_id")
    exclude = ("client_secret", "amount", "line_items", "payment_id")
    readonly_fields = ("amount_display", "items_display", "payment_link")

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: CheckoutSession) -> str:
        return format_amount(obj.amount, obj.currency) if obj.currency else "-"

    @admin.display(description="line items")
    def items_display(self, obj: CheckoutSession) -> str:
        lines = [
            (
                item.get("name", ""),
                item.get("quantity", 1),
                format_amount(int(item.get("amount", 0)), obj.currency),
            )
            for item in obj.line_items or []
        ]
        if not lines:
            return "-"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{} &times; {} at {}</li>", lines))

    @admin.display(description="payment", ordering="payment_id")
    def payment_link(self, obj: CheckoutSession) -> str:
        if not obj.payment_id:
            return "-"
        url = reverse("admin:payments_paymentintent_change", args=[quote(obj.payment_id)])
        return format_html('<a href="{}">{}</a>', url, obj.payment_id)
