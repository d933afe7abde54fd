from django.contrib import admin

from apps.tenants.db import current_schema
from apps.tenants.models import ApiKey, Domain, Marketplace
from apps.tenants.services import api_key_revoke


class PublicOnlyAdmin(admin.ModelAdmin):
    """Marketplaces are the platform owner's business: shown on the public host only."""

    def has_module_permission(self, request):
        return current_schema() == "public" and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return current_schema() == "public" and super().has_view_permission(request, obj)


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Marketplace)
class MarketplaceAdmin(PublicOnlyAdmin):
    list_display = ("schema_name", "name", "owner_email", "is_active", "created_at")
    search_fields = ("schema_name", "name", "owner_email")
    readonly_fields = ("schema_name", "created_at")
    inlines = [DomainInline]

    def has_add_permission(self, request):
        return False  # provisioning goes through `create_marketplace` (clones the template schema)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(PublicOnlyAdmin):
    list_display = ("__str__", "tenant", "mode", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("mode", "tenant")
    readonly_fields = ("tenant", "mode", "prefix", "last4", "key_hash", "created_at", "last_used_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
