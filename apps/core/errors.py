"""The one error shape every JSON endpoint answers with (the REST API and the processor webhook
endpoints alike): ``{"error": {"type", "code", "message", "param"}}``, serialised one way
(``error_response``: compact, as DRF's renderer writes the API's other answers)."""

from __future__ import annotations

from django.http import JsonResponse

# DRF's JSONRenderer with its defaults (COMPACT_JSON, UNICODE_JSON): no spaces, text as is.
JSON_DUMPS_PARAMS = {"separators": (",", ":"), "ensure_ascii": False}


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


def error_response(body: dict, status: int) -> JsonResponse:
    """An error body (``error_body``, or one with more keys) as a JSON response."""
    return JsonResponse(body, status=status, json_dumps_params=JSON_DUMPS_PARAMS)
