"""Operators: outbound webhooks: endpoints (enable, disable), events, and each delivery's attempt
log ("redeliver"). (The inbound events a marketplace received are in the payments admin.)"""

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.core.admin_mixins import ReadOnlyAdminMixin, TenantOnlyAdminMixin
from apps.webhooks.models import (
    OutboundEvent,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)
from apps.webhooks.outbound import delivery_redeliver, endpoint_enable, event_body


class WebhookDeliveryAttemptInline(admin.TabularInline):
    model = WebhookDeliveryAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "manual",
        "started_at",
        "duration_ms",
        "status_code",
        "succeeded",
        "error",
        "response",
    )
    readonly_fields = fields

    @admin.display(description="response (first 2 KB)")
    def response(self, obj):
        return format_html("<pre style='white-space:pre-wrap;max-width:40em'>{}</pre>", obj.response_body)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "event_type",
        "event_link",
        "endpoint",
        "state",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("state", "event__type", "endpoint")
    search_fields = ("=event__id", "=event__object_id", "endpoint__url")
    date_hierarchy = "created_at"
    list_select_related = ("event", "endpoint")
    actions = ["redeliver"]
    inlines = [WebhookDeliveryAttemptInline]
    fields = (
        "event_link",
        "endpoint",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "body",
    )
    readonly_fields = fields

    @admin.display(description="type", ordering="event__type")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description="event")
    def event_link(self, obj):
        url = reverse("admin:webhooks_outboundevent_change", args=[obj.event_id])
        return format_html('<a href="{}">{}</a>', url, obj.event_id)

    @admin.display(description="what is sent")
    def body(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(event_body(obj.event), indent=2, sort_keys=True))

    def has_redeliver_permission(self, request):
        return self.has_view_permission(request)

    @admin.action(description="Redeliver now (one more attempt, signed anew)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        for pk in ids:
            delivery_redeliver(delivery_id=pk)
        self.message_user(request, f"queued {len(ids)} redelivery attempt(s)")


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ("endpoint", "state", "attempts", "last_status_code", "last_error", "delivered_at", "log")
    readonly_fields = fields
    show_change_link = True

    @admin.display(description="log")
    def log(self, obj):
        url = reverse("admin:webhooks_webhookdelivery_change", args=[obj.pk])
        return format_html('<a href="{}">attempts</a>', url)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OutboundEvent)
class OutboundEventAdmin(TenantOnlyAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "type", "id", "object_id")
    list_filter = ("type",)
    search_fields = ("=id", "=object_id")
    date_hierarchy = "created_at"
    inlines = [WebhookDeliveryInline]
    fields = ("id", "type", "object_type", "object_id", "created_at", "source_key", "data_pretty")
    readonly_fields = fields

    @admin.display(description="data")
    def data_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, sort_keys=True))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("url", "id", "status", "events", "failing_since", "last_success_at", "disabled_reason")
    list_filter = ("status",)
    search_fields = ("=id", "url", "description")
    actions = ["enable", "disable"]
    fields = (
        "id",
        "url",
        "description",
        "enabled_events",
        "status",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "last_success_at",
        "created_at",
        "delivery_summary",
    )
    readonly_fields = tuple(f for f in fields if f not in ("url", "description", "enabled_events"))

    @admin.display(description="events")
    def events(self, obj):
        return ", ".join(obj.enabled_events)

    @admin.display(description="deliveries")
    def delivery_summary(self, obj):
        counts = dict(obj.deliveries.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        text = ", ".join(f"{counts.get(s, 0)} {s}" for s in WebhookDelivery.State.values)
        return format_html('<a href="{}">{}</a>', url, text)

    def has_add_permission(self, request):
        return False  # created through the API, which shows the secret once

    @admin.action(description="Enable (and clear the failure record)")
    def enable(self, request, queryset):
        for endpoint in queryset:
            endpoint_enable(endpoint)
            endpoint.save()
        self.message_user(request, f"enabled {queryset.count()} endpoint(s)")

    @admin.action(description="Disable (stop sending events)")
    def disable(self, request, queryset):
        n = queryset.filter(status=WebhookEndpoint.Status.ENABLED).update(
            status=WebhookEndpoint.Status.DISABLED,
            disabled_at=timezone.now(),
            disabled_reason=f"disabled in the admin by {request.user}",
        )
        self.message_user(request, f"disabled {n} endpoint(s)")
