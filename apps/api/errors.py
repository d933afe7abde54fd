"""Every API error has one shape: {"error": {"type", "code", "message", "param"}}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from apps.core.errors import error_body, error_response
from apps.core.money import MoneyError
from apps.payments.services import PaymentError

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with our full shape: status, type, code, message and the param it is about."""

    def __init__(self, status_code: int, type_: str, code: str, message: str, param: str | None = None):
        super().__init__(message, code)
        self.status_code = status_code
        self.type = type_
        self.error_code = code
        self.param = param


# An issuer refusing a card (saving it): Stripe's 402 card_error.
CARD_ERROR_CODES = frozenset({"card_declined", "authentication_required"})


def payment_error(exc: PaymentError | MoneyError) -> ApiError:
    """A payment service's refusal, as an API error. Bad input (it names a param) is 400; a request
    the payment's current state does not allow is 409; a gateway refusing a capture or cancel is
    422; the issuer refusing the card (e.g. when saving it) is 402 ``card_error``."""
    code = getattr(exc, "code", "parameter_invalid")
    param = getattr(exc, "param", None)
    if isinstance(exc, MoneyError):
        param = "currency" if "currency" in str(exc) else "amount"
    if code in CARD_ERROR_CODES:
        return ApiError(402, "card_error", code, str(exc), param)
    if param is not None:
        status_code = 400
    elif code.endswith("_unexpected_state"):
        status_code = 409
    else:
        status_code = 422
    return ApiError(status_code, "invalid_request_error", code, str(exc), param)


# DRF's validation codes, in Stripe's words where Stripe has one.
_VALIDATION_CODES = {
    "invalid": "parameter_invalid",
    "required": "parameter_missing",
    "null": "parameter_missing",
}


def internal_error_body(request_id: str) -> dict:
    """A real bug's answer: no detail of it, the request id to quote to support."""
    return {
        "error": {
            "type": "api_error",
            "code": "internal_error",
            "message": "Something went wrong on our side; it has been logged. Quote the request id "
            "if you contact support.",
            "param": None,
            "request_id": request_id,
        }
    }


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
    elif isinstance(exc, (PaymentError, MoneyError)):
        exc = payment_error(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        # A real bug. Answered here in the contract's shape (never Django's HTML page, whatever
        # DEBUG says); logged with its traceback and the request id.
        request = context.get("request")
        log.error("unhandled error in %s", getattr(request, "path", "?"), exc_info=exc)
        set_rollback()
        request_id = getattr(getattr(request, "_request", request), "request_id", "-")
        return Response(internal_error_body(request_id), status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    if isinstance(exc, ApiError):
        response.data = error_body(exc.type, exc.error_code, str(exc.detail), exc.param)
    elif isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_validation_error(exc.detail)
        body = error_body("invalid_request_error", _VALIDATION_CODES.get(code, code), message, param)
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
        # A JSON body is read (and refused when malformed) by ApiEdgeMiddleware first; one code.
        response.data = error_body(
            "invalid_request_error", "invalid_json", "The request body could not be parsed."
        )
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        response.data = error_body("invalid_request_error", "unsupported_media_type", str(exc.detail))
    else:
        response.data = error_body("api_error", getattr(exc, "default_code", "error"), str(exc.detail))
    return response


def api_not_found(request, exception=None):
    return error_response(
        error_body(
            "invalid_request_error",
            "resource_missing",
            f"Unrecognized request URL ({request.method}: {request.path}).",
        ),
        404,
    )
