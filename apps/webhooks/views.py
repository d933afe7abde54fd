"""Processor endpoints on each marketplace's host: ``POST /webhooks/stripe/<gateway account>`` and
``POST /webhooks/adyen/<gateway account>``. A view checks the signature over the raw body, stores
the events (one service call) and answers at once; a worker applies them. Anything that cannot be
verified or read is answered 400 with the API's JSON error shape and nothing is stored."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from apps.core.errors import error_body
from apps.payments.models import GatewayAccount
from apps.webhooks import adyen_events, signatures, stripe_events
from apps.webhooks.events import EventFormatError
from apps.webhooks.models import InboundEvent
from apps.webhooks.selectors import gateway_account_for_webhook
from apps.webhooks.services import inbound_events_store

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body("invalid_request_error", code, message), status=status)


def _receive(
    request: HttpRequest, account_name: str, kind: str
) -> tuple[GatewayAccount, bytes] | JsonResponse:
    """The endpoint's gateway account and the raw body, or the error answer."""
    if request.method != "POST":
        return _error(405, "method_not_allowed", "webhooks are delivered with POST")
    account = gateway_account_for_webhook(name=account_name, kind=kind)
    if account is None:
        return _error(404, "resource_missing", f"no {kind} gateway account named {account_name!r}")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "payload_too_large", "the body is too large")
    return account, body


@csrf_exempt
def stripe_webhook(request: HttpRequest, account: str) -> HttpResponse:
    received = _receive(request, account, GatewayAccount.Kind.STRIPE)
    if isinstance(received, JsonResponse):
        return received
    gateway, body = received
    try:
        signatures.stripe_verify(
            body=body,
            header=request.headers.get("Stripe-Signature"),
            secrets=signatures.secrets_of(gateway.credentials, "webhook_secret"),
        )
        notification = stripe_events.parse(body)
    except signatures.SignatureError as exc:
        log.warning("stripe webhook refused", extra={"account": gateway.name, "why": str(exc)})
        return _error(400, "signature_invalid", str(exc))
    except EventFormatError as exc:
        return _error(400, "event_invalid", str(exc))
    [stored] = inbound_events_store(
        account=gateway,
        provider=InboundEvent.Provider.STRIPE,
        body=body.decode("utf-8"),
        notifications=[notification],
    )
    return JsonResponse({"received": True, "id": notification.event_id, "duplicate": not stored.created})


@csrf_exempt
def adyen_webhook(request: HttpRequest, account: str) -> HttpResponse:
    received = _receive(request, account, GatewayAccount.Kind.ADYEN)
    if isinstance(received, JsonResponse):
        return received
    gateway, body = received
    credentials = gateway.credentials
    username = credentials.get("webhook_username")
    if username and not signatures.basic_auth_valid(
        header=request.headers.get("Authorization"),
        username=username,
        password=credentials.get("webhook_password", ""),
    ):
        response = _error(401, "authentication_failed", "basic authentication failed")
        response["WWW-Authenticate"] = 'Basic realm="webhooks"'
        return response
    try:
        items = adyen_events.parse_items(body)
        signatures.adyen_verify(items=items, keys=signatures.secrets_of(credentials, "hmac_key"))
        notifications = adyen_events.notifications(items)
    except signatures.SignatureError as exc:
        log.warning("adyen webhook refused", extra={"account": gateway.name, "why": str(exc)})
        return _error(400, "signature_invalid", str(exc))
    except EventFormatError as exc:
        return _error(400, "event_invalid", str(exc))
    inbound_events_store(
        account=gateway,
        provider=InboundEvent.Provider.ADYEN,
        body=body.decode("utf-8", errors="replace"),
        notifications=notifications,
    )
    return HttpResponse(adyen_events.ACCEPTED, content_type="text/plain")
