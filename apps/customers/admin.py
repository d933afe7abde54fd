from django.contrib import admin

from apps.core.admin_mixins import TenantOnlyAdminMixin
from apps.customers.models import Customer


@admin.register(Customer)
class CustomerAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "email", "name", "created_at")
    search_fields = ("id", "email", "name")
    readonly_fields = ("id", "created_at", "updated_at")
