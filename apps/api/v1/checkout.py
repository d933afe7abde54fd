"""Checkout sessions: create (its hosted page's ``url`` and, once, its ``client_secret``),
retrieve, list. The page and its element live in ``apps.checkout`` on the marketplace's host."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.errors import ApiError, payment_error
from apps.api.fields import (
    AmountField,
    BlankAsNullField,
    ConstantField,
    CurrencyField,
    MetadataField,
    TimestampField,
)
from apps.api.idempotency import idempotent
from apps.api.v1.common import ERRORS, ApiView, choice, found, list_response, list_schema, validated
from apps.checkout.errors import CheckoutError
from apps.checkout.models import CheckoutSession
from apps.checkout.selectors import checkout_session_get, checkout_sessions_query
from apps.checkout.services import checkout_session_create, checkout_session_sync
from apps.tenants.db import tenant_connection
from apps.tenants.selectors import marketplace_primary_domain


def session_url(request: Request | None, session_id: str) -> str:
    """The hosted page on the marketplace's own host: its primary domain, with the request's
    scheme and port (for development: ``http://demo.localhost:8000``) whichever host the API was
    called on (the public host picks the marketplace by the key)."""
    tenant = getattr(tenant_connection(), "tenant", None)
    domain = marketplace_primary_domain(marketplace=tenant) if tenant is not None else None
    host = request.get_host() if request is not None else ""
    port = host.rsplit(":", 1)[1] if ":" in host else ""
    if domain:
        host = f"{domain}:{port}" if port else domain
    scheme = request.scheme if request is not None else "https"
    return f"{scheme}://{host}/checkout/{session_id}"


class LineItemIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    amount = AmountField(help_text="the unit amount in minor units")
    quantity = serializers.IntegerField(min_value=1, max_value=10_000, default=1)


class LineItemOut(serializers.Serializer):
    name = serializers.CharField()
    amount = serializers.IntegerField()
    quantity = serializers.IntegerField()


class CheckoutSessionOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("checkout_session")
    url = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=CheckoutSession.Status.choices)
    mode = serializers.ChoiceField(choices=CheckoutSession.Mode.choices)
    amount = serializers.IntegerField(allow_null=True)
    currency = serializers.SerializerMethodField()
    line_items = LineItemOut(many=True)
    customer = BlankAsNullField(source="customer_id")
    save_payment_method = serializers.BooleanField()
    success_url = BlankAsNullField()
    cancel_url = BlankAsNullField()
    payment = BlankAsNullField(
        source="payment_id", help_text="the session's payment (pay_...) once the shopper paid"
    )
    payment_method = BlankAsNullField(
        source="payment_method_id", help_text="setup mode: the payment method (paym_...) saved"
    )
    metadata = serializers.DictField(child=serializers.CharField())
    expires_at = TimestampField()
    created = TimestampField(source="created_at")

    def get_url(self, session) -> str:
        return session_url(self.context.get("request"), session.id)

    def get_currency(self, session) -> str | None:
        return session.currency.lower() or None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if instance.mode == CheckoutSession.Mode.SETUP:
            data["amount"] = None
        return data


class CheckoutSessionCreatedOut(CheckoutSessionOut):
    client_secret = serializers.CharField(
        help_text="shown once: give it to the element (Marketplace.checkout) on your page"
    )


class CheckoutSessionCreateIn(serializers.Serializer):
    mode = serializers.ChoiceField(choices=CheckoutSession.Mode.choices, default=CheckoutSession.Mode.PAYMENT)
    amount = AmountField(required=False, help_text="payment mode: the total in minor units (or line_items)")
    currency = CurrencyField(required=False)
    line_items = LineItemIn(many=True, required=False, help_text="payment mode: the total is their sum")
    customer = serializers.CharField(required=False, max_length=40)
    splits = serializers.ListField(
        child=serializers.JSONField(), required=False, allow_empty=False, max_length=100
    )
    save_payment_method = serializers.BooleanField(
        default=False, help_text="save the card for the customer for later charges without them"
    )
    success_url = serializers.CharField(required=False, max_length=2000)
    cancel_url = serializers.CharField(required=False, max_length=2000)
    metadata = MetadataField(required=False)
    expires_in = serializers.IntegerField(
        required=False, help_text="seconds until the page expires (60 to 604800)"
    )


def _error(exc: CheckoutError) -> ApiError:
    return payment_error(exc)  # type: ignore[arg-type]  # same shape: message, code, param


def checkout_session_body(session: CheckoutSession, request: Request | None = None) -> dict:
    return dict(CheckoutSessionOut(session, context={"request": request}).data)


def checkout_session_snapshot(session_id: str) -> dict:
    """A session as webhooks carry it."""
    return checkout_session_body(found(checkout_session_get(session_id=session_id)))


SESSION_EXAMPLE = OpenApiExample(
    "Two mugs, paid on the marketplace's hosted page",
    value={
        "currency": "usd",
        "line_items": [{"name": "Stoneware mug", "amount": 1800, "quantity": 2}],
        "success_url": "https://shop.example/thanks",
        "cancel_url": "https://shop.example/cart",
    },
    request_only=True,
)


class CheckoutSessionListView(ApiView):
    scope_resource = "checkout_sessions"

    @list_schema(
        "checkout_sessions_list",
        CheckoutSessionOut,
        OpenApiParameter("status", str, enum=CheckoutSession.Status.values),
        OpenApiParameter("customer", str),
        OpenApiParameter("payment", str),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        query = checkout_sessions_query(
            status=choice(params, "status", CheckoutSession.Status.values),
            customer=params.get("customer"),
            payment=params.get("payment"),
        )
        return list_response(
            request,
            query,
            lambda rows: CheckoutSessionOut(rows, many=True, context={"request": request}).data,
        )

    @extend_schema(
        operation_id="checkout_sessions_create",
        request=CheckoutSessionCreateIn,
        responses={201: CheckoutSessionCreatedOut, **ERRORS},
        examples=[SESSION_EXAMPLE],
        description="Create a checkout session: send the shopper to its `url` (the marketplace's "
        "hosted page), or mount the element (`/checkout.js`) on your page with its `id` and "
        "`client_secret` (answered only here). `checkout_session.completed` tells you it was paid.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(CheckoutSessionCreateIn, request.data)
        try:
            session = checkout_session_create(
                mode=data["mode"],
                amount=data.get("amount"),
                currency=data.get("currency"),
                line_items=[dict(item) for item in data["line_items"]] if "line_items" in data else None,
                customer_id=data.get("customer", ""),
                splits=data.get("splits"),
                save_payment_method=data["save_payment_method"],
                success_url=data.get("success_url", ""),
                cancel_url=data.get("cancel_url", ""),
                metadata=data.get("metadata"),
                expires_in=data.get("expires_in"),
            )
        except CheckoutError as exc:
            raise _error(exc) from None
        body = {**checkout_session_body(session, request), "client_secret": session.client_secret}
        return Response(body, status=status.HTTP_201_CREATED)


class CheckoutSessionDetailView(ApiView):
    scope_resource = "checkout_sessions"

    @extend_schema(operation_id="checkout_sessions_retrieve", responses={200: CheckoutSessionOut, **ERRORS})
    def get(self, request: Request, session_id: str) -> Response:
        try:
            session = checkout_session_sync(session_id=session_id)
        except CheckoutError:
            session = found(None)
        return Response(checkout_session_body(session, request))
