"""Customers: create, retrieve, update (POST, as Stripe), list."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.fields import ConstantField, MetadataField, TimestampField
from apps.api.idempotency import idempotent
from apps.api.v1.common import ERRORS, ApiView, found, list_response, list_schema, read_schema, validated
from apps.customers.selectors import customer_get, customers_query
from apps.customers.services import customer_create, customer_update


class CustomerOut(serializers.Serializer):
    id = serializers.CharField()
    object = ConstantField("customer")
    email = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    created = TimestampField(source="created_at")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        for field in ("email", "name", "description"):
            data[field] = data[field] or None
        return data


class CustomerIn(serializers.Serializer):
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    name = serializers.CharField(required=False, allow_blank=True, max_length=256)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    metadata = MetadataField(required=False)


CUSTOMER_EXAMPLE = OpenApiExample(
    "A customer",
    value={"email": "jenny@example.com", "name": "Jenny Rosen", "metadata": {"order": "6735"}},
    request_only=True,
)


class CustomerListView(ApiView):
    scope_resource = "customers"

    @list_schema("customers_list", CustomerOut, OpenApiParameter("email", str))
    def get(self, request: Request) -> Response:
        return list_response(request, customers_query(email=request.query_params.get("email")), CustomerOut)

    @extend_schema(
        operation_id="customers_create",
        request=CustomerIn,
        responses={201: CustomerOut, **ERRORS},
        examples=[CUSTOMER_EXAMPLE],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        customer = customer_create(**validated(CustomerIn, request.data))
        return Response(CustomerOut(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailView(ApiView):
    scope_resource = "customers"

    @read_schema(operation_id="customers_retrieve", responses={200: CustomerOut, **ERRORS})
    def get(self, request: Request, customer_id: str) -> Response:
        return Response(CustomerOut(found(customer_get(customer_id=customer_id))).data)

    @extend_schema(
        operation_id="customers_update",
        request=CustomerIn,
        responses={200: CustomerOut, **ERRORS},
        description="Changes the given fields; metadata merges key by key (an empty value removes a key).",
    )
    @idempotent
    def post(self, request: Request, customer_id: str) -> Response:
        customer = found(customer_get(customer_id=customer_id))
        customer = customer_update(customer=customer, **validated(CustomerIn, request.data))
        return Response(CustomerOut(customer).data)
