"""Admin building blocks shared by the apps."""

from __future__ import annotations

from apps.tenants.db import current_schema


class TenantOnlyAdminMixin:
    """Models that live in marketplace schemas only: hidden on the public (platform) host."""

    def has_module_permission(self, request):
        return current_schema() != "public" and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request, obj=None):
        return current_schema() != "public" and super().has_view_permission(request, obj)  # type: ignore[misc]


class ReadOnlyAdminMixin:
    """Append-only records: viewable, never added, changed or deleted from the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # which also removes Django's "delete selected" action
