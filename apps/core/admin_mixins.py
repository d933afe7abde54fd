"""Admin building blocks shared by the apps."""

from __future__ import annotations

from apps.core.forms import card_number_refusing
from apps.tenants.db import current_schema

# The admin's views whose forms (the model's, its inlines') refuse card numbers as field errors.
FORM_VIEWS = ("add_view", "change_view")


class CardNumberFormAdminMixin:
    """The add and change forms, inlines included, refuse a card number as an error on its field
    (``apps.core.forms``); ``CardNumberFormMiddleware`` refuses anything else posted to the admin."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        return card_number_refusing(super().get_form(request, obj, change=change, **kwargs))  # type: ignore[misc]

    def get_formsets_with_inlines(self, request, obj=None):
        for formset, inline in super().get_formsets_with_inlines(request, obj):  # type: ignore[misc]
            formset.form = card_number_refusing(formset.form)
            yield formset, inline


class TenantOnlyAdminMixin(CardNumberFormAdminMixin):
    """Models that live in marketplace schemas only: hidden on the public (platform) host. Their
    forms refuse card numbers as field errors (``CardNumberFormAdminMixin``)."""

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
