from django.contrib import admin

from apps.checkout.models import CheckoutSession
from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Sessions change only through the checkout services (page, API, expiry job)."""

    list_display = ("id", "status", "mode", "amount", "currency", "payment_id", "expires_at", "created_at")
    list_filter = ("status", "mode")
    search_fields = ("id", "payment_id", "customer_id", "payment_method_id")
    exclude = ("client_secret",)
