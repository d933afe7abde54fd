"""What every v1 view shares: list parameters, the list envelope, the error schema."""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.views import APIView

from apps.api.errors import ApiError

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1 to 100 (default 10)"),
    OpenApiParameter("starting_after", str, description="an object id: the page after it"),
    OpenApiParameter("ending_before", str, description="an object id: the page before it"),
]

ERROR = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorDetail",
            {
                "type": serializers.CharField(),
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "param": serializers.CharField(allow_null=True),
            },
        )
    },
)
ERRORS = {400: ERROR, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR, 422: ERROR, 429: ERROR}


def list_of(name: str, item) -> serializers.Serializer:
    return inline_serializer(
        name,
        {
            "object": serializers.CharField(),
            "url": serializers.CharField(),
            "has_more": serializers.BooleanField(),
            "data": item(many=True),
        },
    )


def timestamp_filters(params, name: str) -> dict[str, datetime]:
    """``created[gte]=<unix seconds>`` etc. as ORM lookups."""
    out = {}
    for op in ("gt", "gte", "lt", "lte"):
        raw = params.get(f"{name}[{op}]")
        if raw is None:
            continue
        try:
            out[op] = datetime.fromtimestamp(int(raw), tz=UTC)
        except (ValueError, OverflowError, OSError):
            raise ApiError(
                400,
                "invalid_request_error",
                "parameter_invalid",
                "Must be a unix timestamp in seconds.",
                f"{name}[{op}]",
            ) from None
    return out


def expansions(params, allowed: set[str]) -> set[str]:
    wanted = {*params.getlist("expand[]"), *params.getlist("expand")}
    unknown = wanted - allowed
    if unknown:
        raise ApiError(
            400,
            "invalid_request_error",
            "parameter_invalid",
            f"Cannot expand {sorted(unknown)[0]!r}; expandable: {', '.join(sorted(allowed)) or 'nothing'}.",
            "expand",
        )
    return wanted


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class ApiView(APIView):
    """Base of every v1 view. ``scope_resource`` names the resource restricted keys are scoped on."""

    scope_resource: str | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        for name, values in request.query_params.lists():
            if any("\x00" in value for value in values):
                raise ApiError(
                    400,
                    "invalid_request_error",
                    "parameter_invalid",
                    "Null characters are not allowed.",
                    name,
                )
