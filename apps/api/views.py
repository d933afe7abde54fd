from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.v1.common import ApiView
from apps.tenants.selectors import marketplace_primary_domain


class AccountView(ApiView):
    """The marketplace the key belongs to (Stripe's ``GET /v1/account``); like every read, it
    refuses query parameters it does not declare (it declares none)."""

    @extend_schema(
        operation_id="account_retrieve",
        responses=inline_serializer(
            "Account",
            {
                "object": serializers.CharField(),
                "id": serializers.CharField(),
                "name": serializers.CharField(),
                "domain": serializers.CharField(allow_null=True),
                "livemode": serializers.BooleanField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        tenant = request.user.tenant  # type: ignore[union-attr]
        return Response(
            {
                "object": "account",
                "id": tenant.schema_name,
                "name": tenant.name,
                "domain": marketplace_primary_domain(marketplace=tenant),
                "livemode": request.auth.mode == "live",  # type: ignore[union-attr]
            }
        )
