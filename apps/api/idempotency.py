"""``Idempotency-Key`` with Stripe's semantics, per API key.

The first request with a key commits an ``in_flight`` record *before* its work starts, so a
concurrent identical request finds it (409 ``idempotency_key_in_use``); when the work is done the
record holds the response, which later requests with the same key and body get back unchanged
(with ``Idempotent-Replayed: true``). The same key with another body or path is 400
``idempotency_error``. Requests whose input was rejected before any work ran, and 5xx responses,
are not stored: a retry runs again. An in-flight record whose request died is taken over once its
lock (``API_IDEMPOTENCY_LOCK_SECONDS``) has passed. Records are kept ``API_IDEMPOTENCY_TTL_HOURS``
and then deleted by the ``api.idempotency_cleanup`` tenant job."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.api.errors import ApiError
from apps.api.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Rejected before any work ran: nothing to remember, a corrected retry may reuse the key.
_INPUT_REJECTED = (exceptions.ValidationError, exceptions.ParseError, exceptions.UnsupportedMediaType)


@dataclass
class Claim:
    record: IdempotencyRecord
    replay: bool


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    """The same JSON in another key order or spacing is the same request."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to canonicalise
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), b"\n", path.encode(), b"\n", canonical):
        digest.update(part)
    return digest.hexdigest()


def idempotency_claim(*, api_key_id: int, key: str, method: str, path: str, fingerprint: str) -> Claim:
    """Claim ``key`` for this request (committed before returning) or return the stored response.

    Raises ApiError 400 ``idempotency_error`` when the key was used with another request, 409
    ``idempotency_key_in_use`` while its first request is still running."""
    lock = timedelta(seconds=settings.API_IDEMPOTENCY_LOCK_SECONDS)
    for _ in range(3):  # the record may be released between our two steps
        now = timezone.now()
        with transaction.atomic():
            record, created = IdempotencyRecord.objects.get_or_create(
                api_key_id=api_key_id,
                key=key,
                defaults={
                    "method": method,
                    "path": path,
                    "fingerprint": fingerprint,
                    "locked_until": now + lock,
                },
            )
        if created:
            return Claim(record, replay=False)
        with transaction.atomic():
            locked = IdempotencyRecord.objects.select_for_update().filter(pk=record.pk).first()
            if locked is None:
                continue
            record = locked
            if record.fingerprint != fingerprint:
                raise ApiError(
                    400,
                    "idempotency_error",
                    "idempotency_error",
                    f"Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. This key was first used for {record.method} {record.path} "
                    "with other parameters.",
                    param=None,
                )
            if record.status == IdempotencyRecord.Status.COMPLETE:
                return Claim(record, replay=True)
            if record.locked_until > now:
                raise ApiError(
                    409,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "A request with this idempotency key is still being processed; retry later.",
                )
            # Its request died without finishing: take the key over.
            record.locked_until = now + lock
            record.save(update_fields=["locked_until"])
            return Claim(record, replay=False)
    raise ApiError(409, "idempotency_error", "idempotency_key_in_use", "Retry the request.")


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: object) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.COMPLETE,
        response_status=status,
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status=IdempotencyRecord.Status.IN_FLIGHT).delete()


def idempotency_cleanup() -> int:
    """Idempotent: delete the current schema's records older than the retention period."""
    cutoff = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _replay(record: IdempotencyRecord, key: str) -> Response:
    return Response(
        record.response_body,
        status=record.response_status,
        headers={"Idempotent-Replayed": "true", HEADER: key},
    )


def idempotent(handler):
    """Wrap an APIView's ``post``: authentication, permissions and throttling have already run."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise ApiError(
                400,
                "idempotency_error",
                "idempotency_key_invalid",
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters.",
            )
        fingerprint = request_fingerprint(
            method=request.method, path=request.path, body=request._request.body
        )
        claim = idempotency_claim(
            api_key_id=request.auth.pk,
            key=key,
            method=request.method,
            path=request.path,
            fingerprint=fingerprint,
        )
        if claim.replay:
            return _replay(claim.record, key)
        rejected = False
        try:
            response = handler(view, request, *args, **kwargs)
        except Exception as exc:
            rejected = isinstance(exc, _INPUT_REJECTED)
            try:
                response = view.handle_exception(exc)
            except BaseException:
                idempotency_release(record=claim.record)
                raise
        except BaseException:
            idempotency_release(record=claim.record)
            raise
        if rejected or response.status_code >= 500:
            idempotency_release(record=claim.record)
        else:
            body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
            idempotency_complete(record=claim.record, status=response.status_code, body=body)
        response[HEADER] = key
        return response

    return wrapper
