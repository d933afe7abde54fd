"""Billing: products, prices, tax rates, subscriptions (create, update, cancel, pause, resume),
invoices (with lines and attempts, void) and recovery analytics. Views parse, call one billing
service, render."""

from __future__ import annotations

from typing import cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.errors import ApiError
from apps.api.fields import BlankAsNullField, ConstantField, CurrencyField, MetadataField, TimestampField
from apps.api.idempotency import Resume, idempotent
from apps.api.models import IdempotencyRecord
from apps.api.v1.common import (
    ERRORS,
    ApiView,
    NoParameters,
    choice,
    found,
    list_response,
    list_schema,
    read_schema,
    validated,
)
from apps.billing import selectors, services
from apps.billing.collection import subscription_first_invoice_collect, subscription_update_and_collect
from apps.billing.models import Invoice, InvoiceAttempt, InvoiceLine, Price, Subscription
from apps.billing.notifications import invoice_urls
from apps.billing.services import BillingError


def billing_error(exc: BillingError) -> ApiError:
    """Bad input (a param) is 400, a missing object named by the body 400, a state conflict 409."""
    if exc.param is not None:
        return ApiError(400, "invalid_request_error", exc.code, str(exc), exc.param)
    if exc.code == "resource_missing":
        return ApiError(404, "invalid_request_error", exc.code, str(exc), None)
    return ApiError(409, "invalid_request_error", exc.code, str(exc), None)


def _call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except BillingError as exc:
        raise billing_error(exc) from None


# --------------------------------------------------------------------------- shapes


class AmountsField(serializers.DictField):
    """``{"usd": 1000, "eur": 900}``: currencies in any case, returned in lowercase."""

    child = serializers.IntegerField()

    def to_representation(self, value):
        return {code.lower(): amount for code, amount in value.items()}


class ProductOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("product")
    name = serializers.CharField()
    description = BlankAsNullField()
    active = serializers.BooleanField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")


class ProductIn(serializers.Serializer):
    name = serializers.CharField(max_length=256)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    active = serializers.BooleanField(default=True)
    metadata = MetadataField(required=False)


class ProductUpdateIn(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=256)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    active = serializers.BooleanField(required=False)


class PriceOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("price")
    product = serializers.CharField(source="product_id")
    nickname = BlankAsNullField()
    amounts = AmountsField()
    interval = serializers.CharField()
    interval_count = serializers.IntegerField()
    trial_days = serializers.IntegerField()
    active = serializers.BooleanField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")


class PriceIn(serializers.Serializer):
    product = serializers.CharField(max_length=40)
    amounts = serializers.DictField(
        child=serializers.JSONField(),
        help_text='amounts per currency in minor units: {"usd": 1000, "eur": 900}',
    )
    interval = serializers.ChoiceField(choices=Price.Interval.choices)
    interval_count = serializers.IntegerField(default=1, min_value=1, max_value=365)
    trial_days = serializers.IntegerField(default=0, min_value=0, max_value=730)
    nickname = serializers.CharField(required=False, allow_blank=True, max_length=256, default="")
    metadata = MetadataField(required=False)


class PriceUpdateIn(serializers.Serializer):
    active = serializers.BooleanField(required=False)
    nickname = serializers.CharField(required=False, allow_blank=True, max_length=256)


class TaxRateOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("tax_rate")
    display_name = serializers.CharField()
    jurisdiction = serializers.CharField()
    percentage = serializers.CharField()
    inclusive = serializers.BooleanField()
    active = serializers.BooleanField()
    created = TimestampField(source="created_at")


class TaxRateIn(serializers.Serializer):
    display_name = serializers.CharField(max_length=100)
    jurisdiction = serializers.CharField(max_length=20, help_text="e.g. DE, US-CA")
    percentage = serializers.CharField(max_length=12, help_text='a decimal string: "19", "7.25"')
    inclusive = serializers.BooleanField(default=False)


class SubscriptionOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("subscription")
    customer = serializers.CharField(source="customer_id")
    price = serializers.CharField(source="price_id")
    currency = CurrencyField()
    quantity = serializers.IntegerField()
    vendor = BlankAsNullField(source="vendor_id")
    payment_method = serializers.CharField()
    tax_jurisdiction = BlankAsNullField()
    status = serializers.ChoiceField(choices=Subscription.Status.choices)
    current_period_start = TimestampField()
    current_period_end = TimestampField()
    trial_end = TimestampField()
    cancel_at_period_end = serializers.BooleanField()
    canceled_at = TimestampField()
    ended_at = TimestampField()
    paused_at = TimestampField()
    latest_invoice = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")

    def get_latest_invoice(self, sub) -> str | None:
        """Read by ``subscriptions_out`` into the context."""
        return self.context["latest_invoices"].get(sub.id)


class SubscriptionIn(serializers.Serializer):
    customer = serializers.CharField(max_length=40)
    price = serializers.CharField(max_length=40)
    currency = CurrencyField()
    payment_method = serializers.CharField(
        max_length=255, help_text="the customer's saved card, e.g. pm_card_visa"
    )
    quantity = serializers.IntegerField(default=1, min_value=1, max_value=1_000_000)
    vendor = serializers.CharField(required=False, allow_blank=True, max_length=40, default="")
    tax_jurisdiction = serializers.CharField(required=False, allow_blank=True, max_length=20, default="")
    trial_days = serializers.IntegerField(required=False, min_value=0, max_value=730)
    metadata = MetadataField(required=False)


class SubscriptionUpdateIn(serializers.Serializer):
    price = serializers.CharField(required=False, max_length=40)
    quantity = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    payment_method = serializers.CharField(required=False, max_length=255)
    proration_behavior = serializers.ChoiceField(
        choices=["create_prorations", "none"], default="create_prorations"
    )


class SubscriptionCancelIn(serializers.Serializer):
    at_period_end = serializers.BooleanField(default=False)


class InvoiceLineOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=InvoiceLine.Kind.choices)
    description = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_amount = serializers.IntegerField(allow_null=True)
    amount = serializers.IntegerField()
    currency = CurrencyField()
    price = serializers.CharField(source="price_id", allow_null=True)
    tax_rate = serializers.CharField(source="tax_rate_id", allow_null=True)
    inclusive = serializers.BooleanField()
    period_start = TimestampField()
    period_end = TimestampField()


class InvoiceAttemptOut(serializers.Serializer):
    number = serializers.IntegerField()
    status = serializers.ChoiceField(choices=InvoiceAttempt.Status.choices)
    payment = BlankAsNullField(source="payment_id")
    gateways = serializers.ListField(child=serializers.CharField())
    decline_code = BlankAsNullField()
    advice_code = BlankAsNullField()
    started = TimestampField(source="started_at")
    finished = TimestampField(source="finished_at")


class InvoiceOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("invoice")
    number = serializers.CharField(allow_null=True)
    subscription = serializers.CharField(source="subscription_id")
    customer = serializers.CharField(source="customer_id")
    currency = CurrencyField()
    status = serializers.ChoiceField(choices=Invoice.Status.choices)
    billing_reason = serializers.CharField()
    period_start = TimestampField()
    period_end = TimestampField()
    subtotal = serializers.IntegerField()
    tax = serializers.IntegerField()
    total = serializers.IntegerField()
    amount_due = serializers.IntegerField()
    amount_paid = serializers.IntegerField()
    payment = BlankAsNullField(source="payment_id")
    attempt_count = serializers.IntegerField()
    next_payment_attempt = TimestampField()
    retries_stopped = BlankAsNullField()
    hosted_invoice_url = serializers.SerializerMethodField()
    lines = InvoiceLineOut(many=True)
    attempts = InvoiceAttemptOut(many=True)
    paid_at = TimestampField()
    created = TimestampField(source="created_at")

    def get_hosted_invoice_url(self, inv) -> str:
        """Read by ``invoices_out`` into the context."""
        return self.context["invoice_urls"][inv.id]


def invoices_out(invoices: list[Invoice]) -> list[dict]:
    """Invoices read by ``selectors.invoices_query`` as the API shows them."""
    return cast(
        "list[dict]", InvoiceOut(invoices, many=True, context={"invoice_urls": invoice_urls(invoices)}).data
    )


def subscriptions_out(subs: list[Subscription]) -> list[dict]:
    latest = selectors.latest_invoice_ids(subscription_ids=[sub.id for sub in subs])
    return cast("list[dict]", SubscriptionOut(subs, many=True, context={"latest_invoices": latest}).data)


def subscription_body(sub: Subscription) -> dict:
    return subscriptions_out([sub])[0]


def invoice_snapshot(invoice_id: str) -> dict:
    return invoices_out([found(selectors.invoice_get(invoice_id=invoice_id))])[0]


def subscription_snapshot(subscription_id: str) -> dict:
    return subscription_body(found(selectors.subscription_get(subscription_id=subscription_id)))


# --------------------------------------------------------------------------- products and prices


class ProductListView(ApiView):
    scope_resource = "products"

    @list_schema("products_list", ProductOut)
    def get(self, request: Request) -> Response:
        return list_response(request, selectors.products_query(), ProductOut)

    @extend_schema(operation_id="products_create", request=ProductIn, responses={201: ProductOut, **ERRORS})
    @idempotent
    def post(self, request: Request) -> Response:
        product = _call(services.product_create, **validated(ProductIn, request.data))
        return Response(ProductOut(product).data, status=status.HTTP_201_CREATED)


class ProductDetailView(ApiView):
    scope_resource = "products"

    @read_schema(operation_id="products_retrieve", responses={200: ProductOut, **ERRORS})
    def get(self, request: Request, product_id: str) -> Response:
        return Response(ProductOut(found(selectors.product_get(product_id=product_id))).data)

    @extend_schema(
        operation_id="products_update", request=ProductUpdateIn, responses={200: ProductOut, **ERRORS}
    )
    @idempotent
    def post(self, request: Request, product_id: str) -> Response:
        product = found(selectors.product_get(product_id=product_id))
        product = _call(services.product_update, product=product, **validated(ProductUpdateIn, request.data))
        return Response(ProductOut(product).data)


class PriceListView(ApiView):
    scope_resource = "products"

    @list_schema("prices_list", PriceOut, OpenApiParameter("product", str), OpenApiParameter("active", bool))
    def get(self, request: Request) -> Response:
        active = request.query_params.get("active")
        qs = selectors.prices_query(
            product=request.query_params.get("product"),
            active=active == "true" if active in ("true", "false") else None,
        )
        return list_response(request, qs, PriceOut)

    @extend_schema(
        operation_id="prices_create",
        request=PriceIn,
        responses={201: PriceOut, **ERRORS},
        examples=[
            OpenApiExample(
                "Monthly, in three currencies, with a 14-day trial",
                value={
                    "product": "prod_...",
                    "amounts": {"usd": 1500, "eur": 1400, "jpy": 2200},
                    "interval": "month",
                    "trial_days": 14,
                },
                request_only=True,
            )
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(PriceIn, request.data)
        price = _call(services.price_create, product_id=data.pop("product"), **data)
        return Response(PriceOut(price).data, status=status.HTTP_201_CREATED)


class PriceDetailView(ApiView):
    scope_resource = "products"

    @read_schema(operation_id="prices_retrieve", responses={200: PriceOut, **ERRORS})
    def get(self, request: Request, price_id: str) -> Response:
        return Response(PriceOut(found(selectors.price_get(price_id=price_id))).data)

    @extend_schema(
        operation_id="prices_update",
        request=PriceUpdateIn,
        responses={200: PriceOut, **ERRORS},
        description="Amounts and interval never change: create a new price instead.",
    )
    @idempotent
    def post(self, request: Request, price_id: str) -> Response:
        price = found(selectors.price_get(price_id=price_id))
        price = _call(services.price_update, price=price, **validated(PriceUpdateIn, request.data))
        return Response(PriceOut(price).data)


class TaxRateListView(ApiView):
    scope_resource = "products"

    @list_schema("tax_rates_list", TaxRateOut)
    def get(self, request: Request) -> Response:
        return list_response(request, selectors.tax_rates_query(), TaxRateOut)

    @extend_schema(operation_id="tax_rates_create", request=TaxRateIn, responses={201: TaxRateOut, **ERRORS})
    @idempotent
    def post(self, request: Request) -> Response:
        rate = _call(services.tax_rate_create, **validated(TaxRateIn, request.data))
        return Response(TaxRateOut(rate).data, status=status.HTTP_201_CREATED)


# --------------------------------------------------------------------------- subscriptions


def _subscription_or_404(subscription_id: str) -> Subscription:
    return found(selectors.subscription_get(subscription_id=subscription_id))


def _subscription_created_resume(request: Request, record: IdempotencyRecord, **_) -> Response | None:
    """A retry after a crash: the subscription the first request created, its first invoice
    charged now if that had not happened yet."""
    sub = subscription_first_invoice_collect(subscription_id=record.resource_ids[0])
    if sub is None:
        return None
    return Response(subscription_body(sub), status=status.HTTP_201_CREATED)


class SubscriptionListView(ApiView):
    scope_resource = "subscriptions"

    @list_schema(
        "subscriptions_list",
        SubscriptionOut,
        OpenApiParameter("customer", str),
        OpenApiParameter("price", str),
        OpenApiParameter("status", str, enum=Subscription.Status.values),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = selectors.subscriptions_query(
            status=choice(params, "status", Subscription.Status.values),
            customer=params.get("customer"),
            price=params.get("price"),
        )
        return list_response(request, qs, subscriptions_out)

    @extend_schema(
        operation_id="subscriptions_create",
        request=SubscriptionIn,
        responses={201: SubscriptionOut, **ERRORS},
        description=(
            "Subscribe a customer. Without a trial the first invoice is charged at once, off-session, "
            "with the saved `payment_method`; a declined first charge leaves the subscription "
            "`past_due`, in dunning. With `vendor`, each paid invoice pays that vendor."
        ),
        examples=[
            OpenApiExample(
                "Monthly in EUR, taxed in Germany, paying a vendor",
                value={
                    "customer": "cus_...",
                    "price": "price_...",
                    "currency": "eur",
                    "payment_method": "pm_card_visa",
                    "tax_jurisdiction": "DE",
                    "vendor": "ven_...",
                },
                request_only=True,
            )
        ],
    )
    @idempotent(resume=Resume(_subscription_created_resume))
    def post(self, request: Request) -> Response:
        data = validated(SubscriptionIn, request.data)
        sub = _call(
            services.subscription_create,
            customer_id=data.pop("customer"),
            price_id=data.pop("price"),
            vendor_id=data.pop("vendor"),
            **data,
        )
        return Response(subscription_body(sub), status=status.HTTP_201_CREATED)


class SubscriptionDetailView(ApiView):
    scope_resource = "subscriptions"

    @read_schema(operation_id="subscriptions_retrieve", responses={200: SubscriptionOut, **ERRORS})
    def get(self, request: Request, subscription_id: str) -> Response:
        return Response(subscription_body(_subscription_or_404(subscription_id)))

    @extend_schema(
        operation_id="subscriptions_update",
        request=SubscriptionUpdateIn,
        responses={200: SubscriptionOut, **ERRORS},
        description="Change price or quantity (prorated on the next invoice) or the payment method "
        "(open invoices are retried at once).",
    )
    @idempotent
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = _subscription_or_404(subscription_id)
        data = validated(SubscriptionUpdateIn, request.data)
        sub = _call(
            subscription_update_and_collect,
            subscription_id=sub.id,
            price_id=data.get("price"),
            quantity=data.get("quantity"),
            payment_method=data.get("payment_method"),
            proration_behavior=data["proration_behavior"],
        )
        return Response(subscription_body(sub))


class SubscriptionCancelView(ApiView):
    scope_resource = "subscriptions"

    @extend_schema(
        operation_id="subscriptions_cancel",
        request=SubscriptionCancelIn,
        responses={200: SubscriptionOut, **ERRORS},
    )
    @idempotent
    def post(self, request: Request, subscription_id: str) -> Response:
        sub = _subscription_or_404(subscription_id)
        data = validated(SubscriptionCancelIn, request.data)
        sub = _call(services.subscription_cancel, subscription_id=sub.id, at_period_end=data["at_period_end"])
        return Response(subscription_body(sub))


class SubscriptionPauseView(ApiView):
    scope_resource = "subscriptions"

    @extend_schema(
        operation_id="subscriptions_pause", request=None, responses={200: SubscriptionOut, **ERRORS}
    )
    @idempotent
    def post(self, request: Request, subscription_id: str) -> Response:
        validated(NoParameters, request.data)
        sub = _call(services.subscription_pause, subscription_id=_subscription_or_404(subscription_id).id)
        return Response(subscription_body(sub))


class SubscriptionResumeView(ApiView):
    scope_resource = "subscriptions"

    @extend_schema(
        operation_id="subscriptions_resume", request=None, responses={200: SubscriptionOut, **ERRORS}
    )
    @idempotent
    def post(self, request: Request, subscription_id: str) -> Response:
        validated(NoParameters, request.data)
        sub = _call(services.subscription_resume, subscription_id=_subscription_or_404(subscription_id).id)
        return Response(subscription_body(sub))


# --------------------------------------------------------------------------- invoices


class InvoiceListView(ApiView):
    scope_resource = "invoices"

    @list_schema(
        "invoices_list",
        InvoiceOut,
        OpenApiParameter("subscription", str),
        OpenApiParameter("customer", str),
        OpenApiParameter("status", str, enum=Invoice.Status.values),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        qs = selectors.invoices_query(
            status=choice(params, "status", Invoice.Status.values),
            subscription=params.get("subscription"),
            customer=params.get("customer"),
        )
        return list_response(request, qs, invoices_out)


class InvoiceDetailView(ApiView):
    scope_resource = "invoices"

    @read_schema(operation_id="invoices_retrieve", responses={200: InvoiceOut, **ERRORS})
    def get(self, request: Request, invoice_id: str) -> Response:
        return Response(invoice_snapshot(invoice_id))


class InvoiceVoidView(ApiView):
    scope_resource = "invoices"

    @extend_schema(operation_id="invoices_void", request=None, responses={200: InvoiceOut, **ERRORS})
    @idempotent
    def post(self, request: Request, invoice_id: str) -> Response:
        found(selectors.invoice_get(invoice_id=invoice_id))
        validated(NoParameters, request.data)
        _call(services.invoice_void, invoice_id=invoice_id)
        return Response(invoice_snapshot(invoice_id))


class RecoveryView(ApiView):
    scope_resource = "invoices"

    @read_schema(
        operation_id="billing_recovery",
        parameters=[OpenApiParameter("months", int, description="how many months back (default 12)")],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description=(
            "Dunning recovery: invoices whose first charge failed, how many were recovered by retries "
            "(count, amount per currency, rate), per month, per decline code of the first failure and per "
            "gateway that declined it; `cross_gateway` counts recoveries paid at another gateway."
        ),
    )
    def get(self, request: Request) -> Response:
        try:
            months = int(request.query_params.get("months", "12"))
        except ValueError:
            months = 0
        if not 1 <= months <= 120:
            raise ApiError(
                400, "invalid_request_error", "parameter_invalid", "months must be 1 to 120", "months"
            )
        return Response({"object": "billing_recovery", **selectors.recovery_report(months=months)})
