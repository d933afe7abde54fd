from __future__ import annotations

import re
import secrets

from config.logging import request_id_var

_VALID = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


class RequestIdMiddleware:
    """Give every request an id (honouring a sane incoming ``X-Request-Id``), put it on every
    log line through a context variable, and return it as ``Request-Id``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request_id = incoming if _VALID.match(incoming) else "req_" + secrets.token_hex(12)
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["Request-Id"] = request_id
        return response
