"""Operators: the inbound events a marketplace received, read-only, with a "reprocess" action."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from apps.core.admin_mixins import TenantOnlyAdminMixin
from apps.webhooks.models import InboundEvent
from apps.webhooks.services import inbound_events_reprocess


@admin.register(InboundEvent)
class InboundEventAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
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

    # Events are records of what a processor sent: viewable, never added, edited or deleted here.
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_reprocess_permission(self, request):
        return self.has_view_permission(request)

    @admin.action(
        description="Reprocess (apply again; harmless if already applied)", permissions=["reprocess"]
    )
    def reprocess(self, request, queryset):
        queued = inbound_events_reprocess(inbound_event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"queued {queued} event(s) for processing")
