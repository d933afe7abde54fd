"""Payment methods (``paym_...``): save a processor's token at a gateway account, retrieve, list
(all, or a customer's), attach to and detach from a customer. A method's credentials are shown
masked: which gateway accounts can charge it, never the references themselves; its network
transaction id only as whether it has one."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.fields import BlankAsNullField, ConstantField, MetadataField, TimestampField
from apps.api.idempotency import idempotent
from apps.api.pagination import cursor_paginate, list_body
from apps.api.v1.common import (
    ERROR,
    ERRORS,
    LIST_PARAMETERS,
    ApiView,
    NoParameters,
    found,
    list_of,
    read_schema,
    referenced,
    validated,
)
from apps.customers.models import Customer
from apps.customers.selectors import customer_get
from apps.payments.selectors import payment_method_get, payment_methods_query
from apps.payments.services.methods import (
    payment_method_attach,
    payment_method_create,
    payment_method_detach,
)


class CardOut(serializers.Serializer):
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField(allow_null=True)
    exp_year = serializers.IntegerField(allow_null=True)
    country = BlankAsNullField()
    funding = BlankAsNullField()
    fingerprint = BlankAsNullField()


class CredentialOut(serializers.Serializer):
    """One gateway account that can charge the method; its reference only masked."""

    gateway = serializers.CharField(source="gateway_account.name")
    reference = serializers.SerializerMethodField()
    created = TimestampField(source="created_at")

    def get_reference(self, credential) -> str:
        return f"...{credential.reference_last4}"


class PaymentMethodOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("payment_method")
    type = serializers.CharField()
    customer = BlankAsNullField(source="customer_id")
    card = CardOut(source="*")
    gateways = CredentialOut(source="credentials.all", many=True)
    has_network_transaction_id = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")

    def get_has_network_transaction_id(self, method) -> bool:
        """Whether merchant-initiated charges (renewals, dunning) carry the network transaction id
        of the card's first customer-initiated charge; the id itself is the networks' and ours to
        pass on, not shown."""
        return bool(method.network_transaction_id)


class PaymentMethodCreateIn(serializers.Serializer):
    gateway = serializers.CharField(max_length=60, help_text="the gateway account the token is from")
    token = serializers.CharField(
        max_length=255, help_text="the processor's token (its card fields' answer; pm_card_visa in the demo)"
    )
    customer = serializers.CharField(required=False, max_length=40)
    metadata = MetadataField(required=False)


class PaymentMethodAttachIn(serializers.Serializer):
    customer = serializers.CharField(max_length=40)


def _customer(customer_id: str) -> Customer:
    return referenced(
        customer_get(customer_id=customer_id), param="customer", what="customer", value=customer_id
    )


def _method_body(method_id: str) -> dict:
    return PaymentMethodOut(found(payment_method_get(method_id=method_id))).data


PAYMENT_METHOD_EXAMPLE = OpenApiExample(
    "Save the simulator's Visa test card at primary for a customer",
    value={"gateway": "primary", "token": "pm_card_visa", "customer": "cus_..."},
    request_only=True,
)


class PaymentMethodListView(ApiView):
    scope_resource = "payment_methods"

    @read_schema(
        operation_id="payment_methods_list",
        parameters=[*LIST_PARAMETERS, OpenApiParameter("customer", str)],
        responses={200: list_of("PaymentMethodList", PaymentMethodOut), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = payment_methods_query(customer=request.query_params.get("customer"))
        page = cursor_paginate(request.query_params, query)
        return Response(list_body(request, PaymentMethodOut(page.data, many=True).data, page.has_more))

    @extend_schema(
        operation_id="payment_methods_create",
        request=PaymentMethodCreateIn,
        responses={200: PaymentMethodOut, 201: PaymentMethodOut, 402: ERROR, **ERRORS},
        examples=[PAYMENT_METHOD_EXAMPLE],
        description="Saves the token at the gateway account, which answers its own credential "
        "(with the customer's consent to later merchant-initiated charges; an issuer refusing the "
        "card answers 402 card_error, card_declined or authentication_required). "
        "The same card saved again for the same customer (same fingerprint) answers 200 with the "
        "method already there, the gateway's credential added to it.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = validated(PaymentMethodCreateIn, request.data)
        customer = _customer(data["customer"]) if data.get("customer") else None
        method, created = payment_method_create(
            gateway=data["gateway"], token=data["token"], customer=customer, metadata=data.get("metadata")
        )
        return Response(
            _method_body(method.pk), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class PaymentMethodDetailView(ApiView):
    scope_resource = "payment_methods"

    @read_schema(operation_id="payment_methods_retrieve", responses={200: PaymentMethodOut, **ERRORS})
    def get(self, request: Request, method_id: str) -> Response:
        return Response(_method_body(method_id))


class PaymentMethodAttachView(ApiView):
    scope_resource = "payment_methods"

    @extend_schema(
        operation_id="payment_methods_attach",
        request=PaymentMethodAttachIn,
        responses={200: PaymentMethodOut, **ERRORS},
    )
    @idempotent
    def post(self, request: Request, method_id: str) -> Response:
        method = found(payment_method_get(method_id=method_id))
        data = validated(PaymentMethodAttachIn, request.data)
        payment_method_attach(method=method, customer=_customer(data["customer"]))
        return Response(_method_body(method.pk))


class PaymentMethodDetachView(ApiView):
    scope_resource = "payment_methods"

    @extend_schema(
        operation_id="payment_methods_detach",
        request=NoParameters,
        responses={200: PaymentMethodOut, **ERRORS},
    )
    @idempotent
    def post(self, request: Request, method_id: str) -> Response:
        method = found(payment_method_get(method_id=method_id))
        validated(NoParameters, request.data)
        payment_method_detach(method=method)
        return Response(_method_body(method.pk))


class CustomerPaymentMethodListView(ApiView):
    scope_resource = "payment_methods"

    @read_schema(
        operation_id="customers_payment_methods_list",
        parameters=LIST_PARAMETERS,
        responses={200: list_of("CustomerPaymentMethodList", PaymentMethodOut), **ERRORS},
    )
    def get(self, request: Request, customer_id: str) -> Response:
        customer = found(customer_get(customer_id=customer_id))
        page = cursor_paginate(request.query_params, payment_methods_query(customer=customer.pk))
        return Response(list_body(request, PaymentMethodOut(page.data, many=True).data, page.has_more))
