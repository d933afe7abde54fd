"""Webhook endpoints (create, retrieve, update, delete, list, roll the secret) and the events they
receive (list, retrieve): ``GET /api/v1/events/{id}`` answers exactly what was delivered."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.errors import ApiError
from apps.api.fields import BlankAsNullField, ConstantField, MetadataField, TimestampField
from apps.api.idempotency import idempotent
from apps.api.v1.common import (
    CREATED_PARAMETERS,
    ERRORS,
    ApiView,
    choice,
    found,
    list_response,
    list_schema,
    read_schema,
    timestamp_filters,
    validated,
)
from apps.webhooks import selectors
from apps.webhooks.models import WebhookEndpoint
from apps.webhooks.outbound import (
    EVENT_TYPES,
    EndpointError,
    endpoint_create,
    endpoint_delete,
    endpoint_roll_secret,
    endpoint_update,
    event_body,
)


def _endpoint_error(exc: EndpointError) -> ApiError:
    return ApiError(400, "invalid_request_error", "parameter_invalid", str(exc), exc.param)


# --------------------------------------------------------------------------- shapes


class WebhookEndpointOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("webhook_endpoint")
    url = serializers.CharField()
    description = BlankAsNullField()
    enabled_events = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=WebhookEndpoint.Status.choices)
    disabled_reason = BlankAsNullField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")


class WebhookEndpointWithSecretOut(WebhookEndpointOut):
    secret = serializers.SerializerMethodField(help_text="the signing secret: shown only here")

    def get_secret(self, _obj) -> str:
        return self.context["secret"]


class WebhookEndpointIn(serializers.Serializer):
    url = serializers.CharField(max_length=2000)
    enabled_events = serializers.ListField(
        child=serializers.CharField(max_length=100),
        allow_empty=False,
        help_text=f'event types, or ["*"]: {", ".join(sorted(EVENT_TYPES))}',
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    metadata = MetadataField(required=False)


class WebhookEndpointUpdateIn(serializers.Serializer):
    url = serializers.CharField(required=False, max_length=2000)
    enabled_events = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, allow_empty=False
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    metadata = MetadataField(required=False)
    disabled = serializers.BooleanField(required=False, help_text="false enables a disabled endpoint")


class RollSecretIn(serializers.Serializer):
    expires_in_hours = serializers.IntegerField(
        required=False,
        default=24,
        min_value=0,
        max_value=168,
        help_text="how long the current secret keeps signing beside the new one (0: not at all)",
    )


class EventDataOut(serializers.Serializer):
    object = serializers.DictField(help_text="the object (payment, refund, ...) as the API showed it then")


class EventOut(serializers.Serializer):
    """Documents ``event_body``'s shape (the views render with ``event_body`` itself)."""

    id = serializers.CharField()
    object = serializers.CharField()
    type = serializers.ChoiceField(choices=sorted(EVENT_TYPES))
    created = serializers.IntegerField()
    data = EventDataOut()  # type: ignore[assignment]


DeletedOut = inline_serializer(
    "DeletedWebhookEndpoint",
    {"id": serializers.CharField(), "object": serializers.CharField(), "deleted": serializers.BooleanField()},
)


def _endpoint_or_404(endpoint_id: str) -> WebhookEndpoint:
    return found(selectors.endpoint_get(endpoint_id=endpoint_id))


# --------------------------------------------------------------------------- endpoints


class WebhookEndpointListView(ApiView):
    scope_resource = "webhook_endpoints"

    @list_schema("webhook_endpoints_list", WebhookEndpointOut)
    def get(self, request: Request) -> Response:
        return list_response(request, selectors.endpoints_query(), WebhookEndpointOut)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=WebhookEndpointIn,
        responses={201: WebhookEndpointWithSecretOut, **ERRORS},
        description=(
            "Events of the enabled types are POSTed to `url` as JSON, signed in the "
            '`Marketplace-Signature` header (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`) '
            "with the `secret` returned here (and only here). A delivery is retried with backoff for "
            "24 hours until it gets a 2xx answer."
        ),
        examples=[
            OpenApiExample(
                "Payments and refunds",
                value={
                    "url": "https://shop.example.com/hooks/payments",
                    "enabled_events": ["payment.succeeded", "payment.failed", "refund.succeeded"],
                },
                request_only=True,
            )
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(WebhookEndpointIn, request.data)
        try:
            endpoint, secret = endpoint_create(**data)
        except EndpointError as exc:
            raise _endpoint_error(exc) from None
        body = WebhookEndpointWithSecretOut(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(ApiView):
    scope_resource = "webhook_endpoints"

    @read_schema(operation_id="webhook_endpoints_retrieve", responses={200: WebhookEndpointOut, **ERRORS})
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(WebhookEndpointOut(_endpoint_or_404(endpoint_id)).data)

    @extend_schema(
        operation_id="webhook_endpoints_update",
        request=WebhookEndpointUpdateIn,
        responses={200: WebhookEndpointOut, **ERRORS},
    )
    @idempotent
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(endpoint_id)
        try:
            endpoint = endpoint_update(
                endpoint_id=endpoint.pk, **validated(WebhookEndpointUpdateIn, request.data)
            )
        except EndpointError as exc:
            raise _endpoint_error(exc) from None
        return Response(WebhookEndpointOut(endpoint).data)

    @read_schema(operation_id="webhook_endpoints_delete", responses={200: DeletedOut, **ERRORS})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(endpoint_id)
        endpoint_delete(endpoint_id=endpoint.pk)
        return Response({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


class WebhookEndpointRollSecretView(ApiView):
    scope_resource = "webhook_endpoints"

    @extend_schema(
        operation_id="webhook_endpoints_roll_secret",
        request=RollSecretIn,
        responses={200: WebhookEndpointWithSecretOut, **ERRORS},
        description=(
            "A new signing secret. For `expires_in_hours` the old secret keeps signing too "
            "(two `v1=` values in the header), so receivers can switch without missing an event."
        ),
    )
    @idempotent
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint_or_404(endpoint_id)
        data = validated(RollSecretIn, request.data)
        endpoint, secret = endpoint_roll_secret(
            endpoint_id=endpoint.pk, expires_in_hours=data["expires_in_hours"]
        )
        return Response(WebhookEndpointWithSecretOut(endpoint, context={"secret": secret}).data)


# --------------------------------------------------------------------------- events


class EventListView(ApiView):
    scope_resource = "events"

    @list_schema(
        "events_list",
        EventOut,
        OpenApiParameter("type", str, description="e.g. payment.succeeded"),
        OpenApiParameter("object", str, description="events about this object id (pay_..., re_...)"),
        *CREATED_PARAMETERS,
        description="The events webhooks deliver, newest first, whether or not an endpoint received them.",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = selectors.outbound_events_query(
            type=choice(params, "type", EVENT_TYPES, what="event type"),
            object_id=params.get("object"),
            created=timestamp_filters(params, "created"),
        )
        return list_response(request, qs, lambda events: [event_body(e) for e in events])


class EventDetailView(ApiView):
    scope_resource = "events"

    @read_schema(operation_id="events_retrieve", responses={200: EventOut, **ERRORS})
    def get(self, request: Request, event_id: str) -> Response:
        return Response(event_body(found(selectors.outbound_event_get(event_id=event_id))))
