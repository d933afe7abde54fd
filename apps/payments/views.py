"""Processor endpoints on each marketplace's host: ``POST /webhooks/<kind>/<gateway account>`` for
every processor that posts webhooks (``registry.webhook_kinds``: ``/webhooks/stripe/...``,
``/webhooks/adyen/...``). The processor's package verifies the request over the raw body; the view
stores its notifications (one service call) and answers at once; a worker applies them. Anything
that cannot be verified or read is answered with the API's JSON error shape and nothing is stored."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from apps.core.errors import error_body
from apps.payments.gateways.base import (
    NotificationFormatError,
    NotificationSignatureError,
    NotificationUnauthenticated,
)
from apps.payments.news import gateway_account_for_webhook, inbound_events_store, notifications_of

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body("invalid_request_error", code, message), status=status)


@csrf_exempt
def notification_receive(request: HttpRequest, account: str, kind: str) -> HttpResponse:
    if request.method != "POST":
        return _error(405, "method_not_allowed", "webhooks are delivered with POST")
    gateway = gateway_account_for_webhook(name=account, kind=kind)
    if gateway is None:
        return _error(404, "resource_missing", f"no {kind} gateway account named {account!r}")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "payload_too_large", "the body is too large")
    reader = notifications_of(gateway)
    try:
        notifications = reader.verify_notification(request.headers, body)
    except NotificationUnauthenticated as exc:
        response = _error(401, "authentication_failed", str(exc))
        response["WWW-Authenticate"] = 'Basic realm="webhooks"'
        return response
    except NotificationSignatureError as exc:
        log.warning(f"{kind} webhook refused", extra={"account": gateway.name, "why": str(exc)})
        return _error(400, "signature_invalid", str(exc))
    except NotificationFormatError as exc:
        return _error(400, "event_invalid", str(exc))
    stored = inbound_events_store(
        account=gateway,
        provider=kind,
        body=body.decode("utf-8", errors="replace"),
        notifications=notifications,
    )
    answer = reader.notification_answer(
        [(notification, s.created) for notification, s in zip(notifications, stored, strict=True)]
    )
    if isinstance(answer.body, dict):
        return JsonResponse(answer.body)
    return HttpResponse(answer.body, content_type=answer.content_type)
