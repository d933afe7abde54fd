"""Outbound webhooks: what storefronts hear of (ARCHITECTURE section 7).

Publishing. ``event_publish`` writes an :class:`OutboundEvent` (a snapshot of the object as the
API renders it) and one :class:`WebhookDelivery` per enabled endpoint that wants the type, in the
caller's transaction, with the first attempt as a durable task: an event exists exactly when its
change committed, and a crash after the commit delays a delivery but never loses it. Publishing is
idempotent on ``source_key`` (the ledger event that records the change).

Delivering. Each attempt is one durable task (``delivery_attempt``), keyed by delivery and attempt
number, so a task run twice does not send twice in a row and a lost message is re-sent by the
sweeper. A POST of the event as JSON, signed ``t=<unix seconds>,v1=<hex HMAC-SHA256 over
"t.body">`` in ``Marketplace-Signature`` (one ``v1`` per valid secret while a rolled secret is
still honoured); a 2xx within the timeout is a success, anything else (an error status, a
redirect, a timeout, a refused connection) a failure. After a failure attempt *n* waits
``min(base * 4**(n-1), cap)`` (1 min, 4 min, 16 min, 64 min, 4.3 h, then every 6 h by default),
and one last attempt is made when the window (24 h) ends. When a delivery gives up and nothing
reached the endpoint since that delivery's first attempt (it failed for the whole window), the
endpoint is disabled and the marketplace's operators are emailed. Every attempt is logged; operators can redeliver by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.core.crypto import decrypt_json, encrypt_json
from apps.core.durable import durable_enqueue
from apps.core.pan import redact_card_numbers_in
from apps.webhooks.egress import address_is_public, post_pinned
from apps.webhooks.models import OutboundEvent, WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Marketplace-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
USER_AGENT = "MarketplacePayments-Webhooks/1"
RESPONSE_LOG_BYTES = 2048

# Event types an endpoint may subscribe to, and how each object type is rendered (the API's own
# representation, by dotted path so this module imports neither the API nor the apps that publish).
# Each publishing app adds its own from its AppConfig.ready(): ``event_types_register``,
# ``renderer_register``.
EVENT_TYPES: dict[str, str] = {}
RENDERERS: dict[str, str] = {}


class EndpointError(ValueError):
    """Bad endpoint input; ``param`` names the field."""

    def __init__(self, message: str, *, param: str):
        super().__init__(message)
        self.param = param


def event_types_register(types: dict[str, str]) -> None:
    EVENT_TYPES.update(types)


def renderer_register(object_type: str, dotted_path: str) -> None:
    RENDERERS[object_type] = dotted_path


# --------------------------------------------------------------------------- signing


def secret_new() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature_header(body: bytes, secrets_: Iterable[str], timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    parts += [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets_]
    return ",".join(parts)


def signature_verify(
    body: bytes,
    header: str,
    secret: str,
    *,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver does (the README's verifier is this function): the timestamp is recent and
    one ``v1`` is the HMAC of ``t.body`` under the secret, compared in constant time."""
    items = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in items if k.strip() == "t"]
    candidates = [v.strip() for k, v in items if k.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit() or not candidates:
        return False
    timestamp = int(timestamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)


def endpoint_secrets(endpoint: WebhookEndpoint, *, now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until its roll expires."""
    now = now or timezone.now()
    out = [decrypt_json(endpoint.secret_encrypted)["secret"]]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > now:
        out.append(decrypt_json(endpoint.previous_secret_encrypted)["secret"])
    return out


# --------------------------------------------------------------------------- endpoints


def _private_address(host: str) -> str | None:
    """The first non-public address ``host`` resolves to (see apps.webhooks.egress)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return None  # unresolvable now: the delivery will fail and be retried
    for info in infos:
        address = str(info[4][0]).split("%")[0]
        if not address_is_public(address):
            return address
    return None


def endpoint_url_check(url: str) -> str:
    """A URL we may POST events to. Outside development only https to public addresses (a
    webhook endpoint must not let a key holder make us call our own network)."""
    url = (url or "").strip()
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise EndpointError("The url must not contain spaces or control characters.", param="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise EndpointError("The url is not a valid URL.", param="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError("The url must be an absolute http or https URL.", param="url")
    if len(url) > 2000:
        raise EndpointError("The url is longer than 2000 characters.", param="url")
    if parts.username or parts.password:
        raise EndpointError("The url must not carry credentials.", param="url")
    if not settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        if parts.scheme != "https":
            raise EndpointError("The url must use https.", param="url")
        private = _private_address(parts.hostname)
        if private:
            raise EndpointError(f"The url's host resolves to a non-public address ({private}).", param="url")
    return url


def enabled_events_check(events: object) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise EndpointError(
            'enabled_events must be a non-empty list of event types, or ["*"].', param="enabled_events"
        )
    unknown = sorted({e for e in events if e != "*" and e not in EVENT_TYPES})
    if unknown:
        raise EndpointError(
            f"Unknown event type {unknown[0]!r}; known: {', '.join(sorted(EVENT_TYPES))}.",
            param="enabled_events",
        )
    return sorted(set(events))


def endpoint_create(
    *, url: str, enabled_events: list[str], description: str = "", metadata: dict | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown once: only its encryption is stored)."""
    secret = secret_new()
    endpoint = WebhookEndpoint.objects.create(
        url=endpoint_url_check(url),
        enabled_events=enabled_events_check(enabled_events),
        description=description,
        metadata=metadata or {},
        secret_encrypted=encrypt_json({"secret": secret}),
    )
    return endpoint, secret


def endpoint_update(
    *,
    endpoint_id: str,
    url: str | None = None,
    enabled_events: list[str] | None = None,
    description: str | None = None,
    metadata: dict | None = None,
    disabled: bool | None = None,
) -> WebhookEndpoint:
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        if url is not None:
            endpoint.url = endpoint_url_check(url)
        if enabled_events is not None:
            endpoint.enabled_events = enabled_events_check(enabled_events)
        if description is not None:
            endpoint.description = description
        if metadata is not None:
            endpoint.metadata = metadata
        if disabled is True and endpoint.status == WebhookEndpoint.Status.ENABLED:
            endpoint.status = WebhookEndpoint.Status.DISABLED
            endpoint.disabled_at = timezone.now()
            endpoint.disabled_reason = "disabled through the API"
        elif disabled is False and endpoint.status == WebhookEndpoint.Status.DISABLED:
            endpoint_enable(endpoint)
        endpoint.save()
    return endpoint


def endpoint_enable(endpoint: WebhookEndpoint) -> None:
    """Enabled again, with a clean failure record (the caller saves)."""
    endpoint.status = WebhookEndpoint.Status.ENABLED
    endpoint.disabled_at = None
    endpoint.disabled_reason = ""
    endpoint.failing_since = None


def endpoint_roll_secret(*, endpoint_id: str, expires_in_hours: int = 24) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one keeps signing (beside the new) for ``expires_in_hours``
    (0: at once), so receivers can switch without missing an event."""
    if isinstance(expires_in_hours, bool) or not isinstance(expires_in_hours, int):
        raise EndpointError("expires_in_hours must be an integer.", param="expires_in_hours")
    if not 0 <= expires_in_hours <= 168:
        raise EndpointError("expires_in_hours must be between 0 and 168.", param="expires_in_hours")
    secret = secret_new()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted if expires_in_hours else ""
        endpoint.previous_secret_expires_at = (
            timezone.now() + timedelta(hours=expires_in_hours) if expires_in_hours else None
        )
        endpoint.secret_encrypted = encrypt_json({"secret": secret})
        endpoint.save()
    return endpoint, secret


def endpoint_delete(*, endpoint_id: str) -> None:
    """Deleted with its delivery log; attempts still scheduled find nothing and stop."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).delete()


# --------------------------------------------------------------------------- publishing


def event_render(object_type: str, object_id: str) -> dict:
    return import_string(RENDERERS[object_type])(object_id)


def event_publish(
    *, type: str, object_type: str, object_id: str, source_key: str, data: dict | None = None
) -> OutboundEvent | None:
    """Record the event and schedule its deliveries, in the caller's transaction. Idempotent on
    ``source_key``: publishing again records nothing and schedules nothing (and returns None
    when there are endpoints)."""
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(status=WebhookEndpoint.Status.ENABLED) if e.wants(type)
    ]
    event = OutboundEvent(
        type=type,
        object_type=object_type,
        object_id=object_id,
        # A second line behind the refusals at the edge: a processor's free text (a dispute's
        # evidence, a description set in its dashboard) never goes out holding a card number.
        data=redact_card_numbers_in(event_render(object_type, object_id) if data is None else data),
        source_key=source_key,
    )
    if not endpoints:  # one statement on the payment hot path
        OutboundEvent.objects.bulk_create([event], ignore_conflicts=True)
        return event
    if OutboundEvent.objects.filter(source_key=source_key).exists():
        return None
    event.save(force_insert=True)
    for endpoint in endpoints:
        delivery = WebhookDelivery.objects.create(
            event=event, endpoint=endpoint, next_attempt_at=event.created_at
        )
        _schedule(delivery, number=1, run_at=event.created_at)
    return event


def event_body(event: OutboundEvent) -> dict:
    """The JSON an endpoint receives (and ``GET /api/v1/events/{id}`` answers)."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created": int(event.created_at.timestamp()),
        "data": {"object": event.data},
    }


def _schedule(delivery: WebhookDelivery, *, number: int, run_at: datetime) -> None:
    durable_enqueue(
        handler="apps.webhooks.outbound.delivery_attempt",
        kwargs={"delivery_id": delivery.pk, "number": number},
        idempotency_key=f"webhook:{delivery.pk}:{number}",
        run_at=run_at,
        max_attempts=5,  # a crash of ours (not the receiver's failure, which is handled) is retried
    )


def retry_delay(failures: int) -> timedelta:
    """The wait after the ``failures``-th failed attempt in a row."""
    base, cap = settings.WEBHOOK_RETRY_BASE_SECONDS, settings.WEBHOOK_RETRY_CAP_SECONDS
    return timedelta(seconds=min(base * 4 ** min(failures - 1, 30), cap))


def delivery_redeliver(*, delivery_id: int) -> None:
    """An operator's "send it again now": one attempt outside the schedule (which goes on if the
    delivery is still pending). Works on succeeded and failed deliveries too."""
    durable_enqueue(
        handler="apps.webhooks.outbound.delivery_attempt",
        kwargs={"delivery_id": delivery_id, "number": 0, "manual": True},
        idempotency_key=f"webhook:{delivery_id}:manual:{secrets.token_hex(8)}",
        max_attempts=1,
    )


def _post(endpoint: WebhookEndpoint, body: bytes, signature: str, event: OutboundEvent) -> dict:
    """One POST; never raises for the receiver's failures."""
    started = time.monotonic()
    out: dict = {"status_code": None, "response_body": "", "error": "", "succeeded": False}
    try:
        # Resolved once and checked; the connection goes to that address (no second resolution).
        response = post_pinned(
            endpoint.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: signature,
                "Marketplace-Event-Id": event.id,
                "Marketplace-Event-Type": event.type,
            },
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_URLS,
        )
        out["status_code"] = response.status_code
        out["response_body"] = response.content[:RESPONSE_LOG_BYTES].decode("utf-8", "replace")
        out["succeeded"] = 200 <= response.status_code < 300
        if not out["succeeded"]:
            out["error"] = f"HTTP {response.status_code}"
    except requests.Timeout:
        out["error"] = f"no answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s"
    except requests.RequestException as exc:
        out["error"] = f"{exc.__class__.__name__}: {exc}"[:500]
    out["duration_ms"] = int((time.monotonic() - started) * 1000)
    return out


def delivery_attempt(*, delivery_id: int, number: int, manual: bool = False) -> str:
    """One attempt (durable task handler). Scheduled attempts run only while the delivery is
    pending; a manual one always runs. Returns what happened."""
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").filter(pk=delivery_id).first()
    if delivery is None:
        return "gone"
    endpoint, event = delivery.endpoint, delivery.event
    if not manual and delivery.state != WebhookDelivery.State.PENDING:
        return "skipped"
    if not manual and endpoint.status != WebhookEndpoint.Status.ENABLED:
        WebhookDelivery.objects.filter(pk=delivery.pk, state=WebhookDelivery.State.PENDING).update(
            state=WebhookDelivery.State.FAILED, next_attempt_at=None, last_error="the endpoint is disabled"
        )
        return "endpoint disabled"
    body = json.dumps(event_body(event), separators=(",", ":"), sort_keys=True).encode()
    signature = signature_header(body, endpoint_secrets(endpoint), int(time.time()))
    started_at = timezone.now()
    result = _post(endpoint, body, signature, event)
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        delivery.attempts += 1
        WebhookDeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            manual=manual,
            started_at=started_at,
            duration_ms=result["duration_ms"],
            status_code=result["status_code"],
            response_body=result["response_body"],
            error=result["error"],
            signature=signature[:500],
            succeeded=result["succeeded"],
        )
        delivery.last_status_code = result["status_code"]
        delivery.last_error = result["error"]
        if result["succeeded"]:
            delivery.state = WebhookDelivery.State.SUCCEEDED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            endpoint.failing_since = None
            endpoint.last_success_at = now
            outcome = "delivered"
        else:
            endpoint.failing_since = endpoint.failing_since or started_at
            outcome = "failed"
            if not manual and delivery.state == WebhookDelivery.State.PENDING:
                outcome = _after_failure(delivery, endpoint, number=number, now=now)
        delivery.save()
        endpoint.save()
    return outcome


def _after_failure(delivery: WebhookDelivery, endpoint: WebhookEndpoint, *, number: int, now) -> str:
    window_end = delivery.event.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)
    if now < window_end:
        run_at = min(now + retry_delay(number), window_end)
        delivery.next_attempt_at = run_at
        _schedule(delivery, number=number + 1, run_at=run_at)
        return f"retry at {run_at.isoformat()}"
    delivery.state = WebhookDelivery.State.FAILED
    delivery.next_attempt_at = None
    # Every attempt of this delivery failed for the whole window; if nothing reached the endpoint
    # since its first attempt either, the endpoint has been failing all that time: disable it.
    first = delivery.attempt_log.order_by("started_at").values_list("started_at", flat=True).first()
    failing_since = endpoint.failing_since
    if (
        endpoint.status == WebhookEndpoint.Status.ENABLED
        and failing_since is not None
        and first is not None
        and failing_since <= first
    ):
        endpoint.status = WebhookEndpoint.Status.DISABLED
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"every delivery failed since {failing_since:%Y-%m-%d %H:%M} UTC "
            f"(last: {delivery.last_error or 'no answer'})"
        )[:500]
        transaction.on_commit(lambda: endpoint_disabled_notify(endpoint_id=endpoint.pk))
        return "gave up; endpoint disabled"
    return "gave up"


def operator_emails() -> list[str]:
    """Who runs this marketplace: its owner and its active staff with an email address."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    emails = list(users.values_list("email", flat=True))
    owner = getattr(getattr(connection, "tenant", None), "owner_email", "")
    return sorted({*emails, *([owner] if owner else [])})


def endpoint_disabled_notify(*, endpoint_id: str) -> int:
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
    recipients = operator_emails()
    if endpoint is None or not recipients:
        return 0
    tenant = getattr(connection, "tenant", None)
    context = {
        "endpoint": endpoint,
        "marketplace": getattr(tenant, "name", ""),
        "failed": endpoint.deliveries.filter(state=WebhookDelivery.State.FAILED).count(),
    }
    try:
        return send_mail(
            subject=f"Webhook endpoint disabled: {endpoint.url}"[:200],
            message=render_to_string("emails/webhook_endpoint_disabled.txt", context),
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:  # the endpoint is disabled whatever the mail server says
        log.exception("could not email operators about disabled endpoint %s", endpoint_id)
        return 0
