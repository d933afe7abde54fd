"""The API's edge, before any view, authentication, idempotency record or log line sees a request.

``ApiEdgeMiddleware`` (for paths under ``/api/``):

- refuses a body it cannot read whole: a ``Transfer-Encoding`` without ``Content-Length`` (411
  ``length_required``: the WSGI server would hand the view an empty body, and an empty object
  would be created) and any uploaded file (400 ``parameter_invalid`` naming its field: no
  resource takes one, and a file field would otherwise be dropped silently);
- refuses a body over ``API_MAX_BODY_BYTES`` and JSON that is malformed or nested deeper than
  ``API_MAX_JSON_DEPTH`` (400 ``parameter_invalid`` / ``invalid_json``, in plain words; never a
  RecursionError further in);
- refuses any request holding a card number (``apps.core.pan``): in the body (keys and values,
  JSON or form-encoded), the query string, the URL path or a header we store
  (``Idempotency-Key``): 400 ``card_number_not_allowed`` naming the param, so nothing of it is
  stored, logged, emailed or sent;
- turns any error response that is not JSON (Django's HTML pages: a 500 raised outside DRF, a
  400 for a suspicious request) into the contract's JSON error shape, whatever ``DEBUG`` says.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from apps.api.errors import internal_error_body
from apps.core.errors import error_body, error_response
from apps.core.pan import card_number_path, find_card_number

API_PREFIX = "/api/"
# Headers whose value we keep (idempotency records) and so must never hold a card number.
STORED_HEADERS = ("Idempotency-Key",)

CARD_NUMBER_MESSAGE = (
    "{where} looks like a card number. Card numbers must never be sent to this API: tokenize the "
    "card with the processor's own fields (Stripe Elements, Adyen Drop-in or the hosted checkout "
    "page) and send the token it returns (pm_...) as payment_method. If this is not a card number, "
    "send it without a run of 12 to 19 digits."
)


class ApiEdgeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        try:
            refusal = api_request_refusal(request)
        except (SuspiciousOperation, MultiPartParserError):  # too many fields, a broken multipart body
            refusal = _refuse("parameter_invalid", "The request body could not be read.", None)
        response = refusal or self.get_response(request)
        return _as_json_error(request, response)


# Methods whose request may carry a body the API reads.
_BODY_METHODS = ("POST", "PUT", "PATCH")


def _refuse(code: str, message: str, param: str | None, status: int = 400) -> HttpResponse:
    return error_response(error_body("invalid_request_error", code, message, param), status)


def _card_number(where: str, param: str | None) -> HttpResponse:
    return _refuse("card_number_not_allowed", CARD_NUMBER_MESSAGE.format(where=where), param)


def json_depth(value: object) -> int:
    """How deeply containers nest in ``value`` (a scalar is 0, ``[]`` is 1); iterative."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def api_request_refusal(request: HttpRequest) -> HttpResponse | None:
    """The 400 that ``request`` gets at the edge, or None when it may go on."""
    for name in STORED_HEADERS:
        if find_card_number(request.headers.get(name, "")):
            return _card_number(f"The {name} header", name)
    if find_card_number(request.path_info):
        return _card_number("Part of the URL", None)
    for name, values in request.GET.lists():
        if find_card_number(name):
            return _card_number("A query parameter's name", None)
        if any(find_card_number(value) for value in values):
            return _card_number(f"The query parameter {name!r}", name)
    chunked = request.META.get("HTTP_TRANSFER_ENCODING") and not request.META.get("CONTENT_LENGTH")
    if chunked and request.method in _BODY_METHODS:
        return _refuse(
            "length_required",
            "Send the request body with a Content-Length header; a chunked body is not read.",
            None,
            status=411,
        )
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE") and not request.META.get("CONTENT_LENGTH"):
        return None
    limit = settings.API_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return _refuse(
            "parameter_invalid", f"The request body is {length} bytes; at most {limit} are accepted.", None
        )
    body = request.body
    if len(body) > limit:
        return _refuse(
            "parameter_invalid", f"The request body is {len(body)} bytes; at most {limit} are accepted.", None
        )
    content_type = request.content_type or ""
    if content_type == "application/json" or content_type.endswith("+json"):
        return _json_refusal(body)
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        for name, values in request.POST.lists():
            if find_card_number(name):
                return _card_number("A field's name", None)
            if any(find_card_number(value) for value in values):
                return _card_number(f"The field {name!r}", name)
        for name, files in request.FILES.lists():
            if find_card_number(name) or any(find_card_number(f.name or "") for f in files):
                return _card_number("An uploaded file's name", None)
        for name in request.FILES:
            return _refuse(
                "parameter_invalid", f"{name} was sent as a file; this API takes no file uploads.", name
            )
        return None
    # Any other type is refused by the parsers (415), but the body is read as text all the same.
    if find_card_number(body.decode("utf-8", "replace")):
        return _card_number("The body", None)
    return None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _json_refusal(body: bytes) -> HttpResponse | None:
    if not body.strip():
        return None
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        data = None
        depth = None
    except ValueError as exc:  # malformed: answered here, in plain words, never with a card in it
        if find_card_number(body.decode("utf-8", "replace")):
            return _card_number("The body", None)
        return _refuse("invalid_json", json_error_message(exc), None)
    else:
        depth = json_depth(data)
    max_depth = settings.API_MAX_JSON_DEPTH
    if depth is None or depth > max_depth:
        return _refuse("invalid_json", f"The JSON body is nested more than {max_depth} levels deep.", None)
    found = card_number_path(data)
    if found is None:
        return None
    path, in_key = found
    if in_key:
        return _card_number(f"A key of {path or 'the body'}", path or None)
    return _card_number(f"The value of {path}" if path else "The body", path or None)


def json_error_message(exc: ValueError) -> str:
    """What is wrong with a JSON body, in the API's words (never Python's advice to its programmer)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    if isinstance(exc, UnicodeDecodeError):
        return "The body is not valid JSON: it is not UTF-8 text."
    if "is not a JSON number" in str(exc):
        return f"The body is not valid JSON: {exc}."
    return "The body is not valid JSON: a number in it is too large."


def _as_json_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    request_id = getattr(request, "request_id", "-")
    if response.status_code >= 500:
        body = internal_error_body(request_id)
    else:
        body = error_body(
            "invalid_request_error",
            "bad_request" if response.status_code == 400 else f"http_{response.status_code}",
            f"The request was refused ({response.status_code} {response.reason_phrase}).",
        )
        body["error"]["request_id"] = request_id
    converted = error_response(body, response.status_code)
    for header in ("Request-Id", "Retry-After", "WWW-Authenticate", "Allow"):
        if header in response:
            converted[header] = response[header]
    return converted
