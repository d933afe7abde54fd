from __future__ import annotations

from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response


@api_view(["GET"])
def account(request: Request) -> Response:
    """The marketplace the key belongs to (Stripe's ``GET /v1/account``)."""
    tenant = request.user.tenant  # type: ignore[union-attr]
    domain = tenant.get_primary_domain()
    return Response(
        {
            "object": "account",
            "id": tenant.schema_name,
            "name": tenant.name,
            "domain": domain.domain if domain else None,
            "livemode": request.auth.mode == "live",  # type: ignore[union-attr]
        }
    )
