"""What every v1 view shares: list parameters, the list envelope and its schema, lookups by id,
choice parameters, the error schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db.models import QuerySet
from django.http import Http404, QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.errors import ApiError
from apps.api.fields import AmountField, CurrencyField
from apps.api.pagination import cursor_paginate, list_body

LIST_PARAMETERS = [
    OpenApiParameter("limit", int, description="1 to 100 (default 10)"),
    OpenApiParameter("starting_after", str, description="an object id: the page after it"),
    OpenApiParameter("ending_before", str, description="an object id: the page before it"),
]
# What ``timestamp_filters(params, "created")`` reads.
CREATED_PARAMETERS = [
    OpenApiParameter(f"created[{op}]", int, description=f"unix seconds ({text})")
    for op, text in (("gt", "after"), ("gte", "at or after"), ("lt", "before"), ("lte", "at or before"))
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
                "request_id": serializers.CharField(
                    required=False, help_text="on a 500: the id to quote to support"
                ),
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


def list_schema(operation_id: str, item: type[serializers.Serializer], *parameters, description=None):
    """The schema of a list endpoint (``GET``): the list parameters and ``parameters``, a list of
    ``item`` (the list is named after it: ``VendorOut`` -> ``VendorList``), the error answers.
    The query parameters it declares are the only ones the endpoint takes (``query_check``)."""
    return read_schema(
        operation_id=operation_id,
        parameters=[*LIST_PARAMETERS, *parameters],
        responses={200: list_of(item.__name__.removesuffix("Out") + "List", item), **ERRORS},
        description=description,
    )


def read_schema(*, parameters: Iterable[OpenApiParameter] = (), **kwargs):
    """``extend_schema`` for a ``GET`` that is not a list (a retrieve, a report): the query
    ``parameters`` it declares are the only ones it takes (``query_check``); a ``GET`` declaring
    none takes none."""
    parameters = list(parameters)
    schema = extend_schema(parameters=parameters, **kwargs)

    def decorate(handler):
        handler.query_parameters = {p.name: p for p in parameters}
        return schema(handler)

    return decorate


def query_check(params: QueryDict, declared: Mapping[str, OpenApiParameter]) -> None:
    """The query string strictly, as bodies are (``validated``): a parameter the endpoint does not
    declare is 400 ``parameter_unknown`` naming it; a value outside a declared enumeration, or a
    boolean other than ``true``/``false``, is 400 ``parameter_invalid``. The handlers parse the
    values themselves (``choice``, ``timestamp_filters``, ``expansions``, the cursor)."""
    for name, values in params.lists():
        parameter = declared.get(name)
        if parameter is None:
            shown = name if len(name) <= 100 else name[:100] + "..."
            raise ApiError(
                400,
                "invalid_request_error",
                "parameter_unknown",
                f"Received unknown parameter: {shown}.",
                name,
            )
        if parameter.many:
            continue  # a list (``expand[]``): its handler names what it cannot take
        allowed = list(parameter.enum or ()) or (["true", "false"] if parameter.type is bool else [])
        if allowed:
            for value in values:
                choice({name: value}, name, allowed)


def list_response(
    request: Request,
    queryset: QuerySet,
    render: type[serializers.Serializer] | Callable[[list], Iterable],
    **order,
) -> Response:
    """One page of ``queryset`` (``cursor_paginate``, with its ``order`` options) in the list
    envelope; ``render`` is the serializer of a row, or a function rendering the page's rows."""
    page = cursor_paginate(request.query_params, queryset, **order)
    if isinstance(render, type):
        data: Any = render(page.data, many=True).data
    else:
        data = render(page.data)
    return Response(list_body(request, data, page.has_more))


T = TypeVar("T")


def found(obj: T | None) -> T:
    """What a selector found, or a 404 (``resource_missing``) when it found nothing."""
    if obj is None:
        raise Http404
    return obj


def referenced(obj: T | None, *, param: str, what: str, value: str) -> T:
    """What a selector found for an id the request body names (``param``), or a 400
    ``resource_missing`` naming the parameter ("No such <what>: '<value>'")."""
    if obj is None:
        raise ApiError(400, "invalid_request_error", "resource_missing", f"No such {what}: {value!r}", param)
    return obj


def choice(params, name: str, values: Iterable[str], *, what: str | None = None) -> str | None:
    """The parameter ``name``, None when absent or empty; one of ``values``, else 400
    ``parameter_invalid`` naming it ("Unknown <what> '<value>'.", ``what`` defaulting to ``name``)."""
    value = params.get(name)
    if value and value not in values:
        raise ApiError(
            400, "invalid_request_error", "parameter_invalid", f"Unknown {what or name} {value!r}.", name
        )
    return value or None


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


class NoParameters(serializers.Serializer):
    """The body of a POST that takes no parameters: any field in it is unknown."""


def validated(serializer_class, data) -> dict:
    """``data`` checked strictly against ``serializer_class``, as Stripe does:

    - a field the serializer (or a nested one) does not declare is 400 ``parameter_unknown``
      naming the first one (the message lists them all); free-form objects (metadata, JSON
      fields) may hold any key;
    - in a JSON body a value of the wrong JSON type (``"100"`` for an integer, ``5`` for a string,
      ``"true"`` for a boolean) is 400 ``parameter_invalid`` naming it. Form-encoded bodies carry
      only strings, which the fields convert as before.

    Then the serializer's own validation applies. Returns the validated data."""
    serializer = serializer_class(data=data)
    form_encoded = isinstance(data, QueryDict)
    unknown = _unknown_fields(serializer.fields, data, "", form_encoded)
    if unknown:
        unknown = [name if len(name) <= 100 else name[:100] + "..." for name in unknown]
        listed = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise parameter_error(
            "parameter_unknown",
            f"Received unknown parameter{'s' if len(unknown) > 1 else ''}: {listed}.",
            unknown[0],
        )
    if not form_encoded:
        _check_json_types(serializer.fields, data, "")
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def parameter_error(code: str, message: str, param: str) -> exceptions.ValidationError:
    """A 400 about one param, raised as a validation error: input refused before any work ran
    (so an idempotency key is not used up by it)."""
    return exceptions.ValidationError({param: ErrorDetail(message, code=code)})


def _path(prefix: str, name: object) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _writable(fields) -> dict:
    return {name: field for name, field in fields.items() if not field.read_only}


def _unknown_fields(fields, data, prefix: str, form_encoded: bool) -> list[str]:
    if not isinstance(data, Mapping):
        return []  # not an object: the serializer refuses it
    writable = _writable(fields)
    unknown = []
    for key in data:
        # Form encoding names nested values "metadata[key]" or "metadata.key".
        name = re.split(r"[.\[]", key, maxsplit=1)[0] if form_encoded else key
        if name not in writable:
            unknown.append(_path(prefix, key))
    if form_encoded:
        return unknown
    for name, field in writable.items():
        value = data.get(name)
        if isinstance(field, serializers.ListSerializer) and isinstance(value, list):
            child: Any = field.child
            for i, item in enumerate(value):
                unknown += _unknown_fields(child.fields, item, f"{_path(prefix, name)}[{i}]", False)
        elif isinstance(field, serializers.Serializer):
            unknown += _unknown_fields(field.fields, value, _path(prefix, name), False)
    return unknown


# A field's class -> the JSON type its value must have in a JSON body (first match wins).
_JSON_TYPES: list[tuple[tuple[type, ...], tuple[type, ...], str]] = [
    ((serializers.BooleanField,), (bool,), "a boolean"),
    ((serializers.IntegerField, AmountField), (int,), "an integer"),
    ((serializers.FloatField, serializers.DecimalField), (int, float), "a number"),
    (
        (serializers.MultipleChoiceField, serializers.ListField, serializers.ListSerializer),
        (list,),
        "an array",
    ),
    ((serializers.CharField, serializers.ChoiceField, CurrencyField), (str,), "a string"),
    ((serializers.DictField, serializers.Serializer), (dict,), "an object"),
]
_JSON_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}


def _json_type_name(value: object) -> str:
    return _JSON_NAMES.get(type(value), "an object")


def _check_json_types(fields, data, prefix: str) -> None:
    if not isinstance(data, Mapping):
        return
    for name, field in _writable(fields).items():
        if name in data:
            _check_json_type(field, data[name], _path(prefix, name))


def _check_json_type(field, value, param: str) -> None:
    if value is None or isinstance(field, serializers.JSONField):
        return  # None: the field's allow_null decides; JSON fields take any JSON
    for classes, accepted, expected in _JSON_TYPES:
        if not isinstance(field, classes):
            continue
        ok = isinstance(value, accepted) and (bool in accepted or not isinstance(value, bool))
        if not ok:
            raise parameter_error(
                "parameter_invalid",
                f"Invalid {param}: must be {expected}, got {_json_type_name(value)}.",
                param,
            )
        break
    if isinstance(field, serializers.ListSerializer) and isinstance(value, list):
        child: Any = field.child
        for i, item in enumerate(value):
            _check_json_types(child.fields, item, f"{param}[{i}]")
    elif isinstance(field, serializers.ListField) and isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_type(field.child, item, f"{param}[{i}]")
    elif isinstance(field, serializers.DictField) and isinstance(value, dict):
        for key, item in value.items():
            _check_json_type(field.child, item, _path(param, key))
    elif isinstance(field, serializers.Serializer):
        _check_json_types(field.fields, value, param)


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
        if request.method in ("GET", "HEAD", "DELETE"):
            # What a read or delete takes is what its schema declares (``list_schema``,
            # ``read_schema``); the bodies of the others are checked by ``validated``.
            handler = getattr(self, request.method.lower(), None)
            query_check(request.query_params, getattr(handler, "query_parameters", {}))
