"""Every API error has one shape: {"error": {"type", "code", "message", "param"}}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

log = logging.getLogger(__name__)


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


def _first_validation_error(detail, prefix: str = "") -> tuple[str | None, str, str]:
    if isinstance(detail, dict):
        for field, value in detail.items():
            name = field if field != "non_field_errors" else ""
            param = f"{prefix}[{name}]" if prefix and name else (name or prefix)
            return _first_validation_error(value, param)
    if isinstance(detail, list) and detail:
        for i, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                return _first_validation_error(item, f"{prefix}[{i}]")
            return _first_validation_error(item, prefix)
    code = getattr(detail, "code", "invalid")
    return (prefix or None), str(detail), str(code)


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handling (and logging) applies
    if isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_validation_error(exc.detail)
        body = error_body(
            "invalid_request_error", "parameter_invalid" if code == "invalid" else code, message, param
        )
        response = Response(body, status=status.HTTP_400_BAD_REQUEST)
    elif isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        response.data = error_body("authentication_error", "invalid_api_key", str(exc.detail))
        response.status_code = 401
    elif isinstance(exc, exceptions.PermissionDenied):
        response.data = error_body("permission_error", "forbidden", str(exc.detail))
    elif isinstance(exc, exceptions.NotFound):
        response.data = error_body("invalid_request_error", "resource_missing", "No such resource.")
    elif isinstance(exc, exceptions.Throttled):
        response.data = error_body("rate_limit_error", "rate_limited", str(exc.detail))
    elif isinstance(exc, exceptions.MethodNotAllowed):
        response.data = error_body("invalid_request_error", "method_not_allowed", str(exc.detail))
    elif isinstance(exc, exceptions.ParseError):
        response.data = error_body("invalid_request_error", "parse_error", str(exc.detail))
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        response.data = error_body("invalid_request_error", "unsupported_media_type", str(exc.detail))
    else:
        response.data = error_body("api_error", getattr(exc, "default_code", "error"), str(exc.detail))
    return response


def api_not_found(request, exception=None):
    return JsonResponse(
        error_body(
            "invalid_request_error",
            "resource_missing",
            f"Unrecognized request URL ({request.method}: {request.path}).",
        ),
        status=404,
    )
