"""``Idempotency-Key`` with Stripe's semantics, per API key, and recovery after a crash.

The first request with a key commits an ``in_flight`` record *before* its work starts, so a
concurrent identical request finds it (409 ``idempotency_key_in_use``); when the work is done the
record holds the response, which later requests with the same key and body get back unchanged
(with ``Idempotent-Replayed: true``). The same key with another body or path is 400
``idempotency_error``. Records are kept ``API_IDEMPOTENCY_TTL_HOURS`` and then deleted by the
``api.idempotency_cleanup`` tenant job.

Each request holds its record under an ``owner`` token, given anew at each claim and takeover;
only the owner binds, stores or releases it. A route that moves money declares how it resumes
(``Resume``); during such a request the services' ``apps.core.recovery.recovery_point`` binds the
record to what they created (``resource_type``, ``resource_ids``) in the very transaction that
created it. Then:

- Input rejected before any work ran, and a 5xx before anything was bound, are not stored: the key
  is released and a retry runs again (nothing was created).
- A 5xx once work started (the record is bound) is stored, as Stripe does. A retry of a resumable
  route does not replay it: it *resumes* the bound object and answers with its current state in the
  route's success shape (driving a payment left processing on first), never creating it again.
- An in-flight record whose request died (its lock, ``API_IDEMPOTENCY_LOCK_SECONDS``, has passed)
  is taken over by the next retry, atomically (the record row is locked: of two racing retries one
  wins, the other gets 409): a bound one is resumed, an unbound one runs again. Should the first
  request still be alive, its next recovery point raises ``RecoveryConflict``, which rolls back
  what it was creating: one key never creates two objects.
- Routes that change an existing object (capture, cancel, confirm) are bound to it from the start;
  their retry answers its current state, or runs again when the first request visibly did nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import Error as DbError
from django.db import connection, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.api.errors import ApiError
from apps.api.models import IdempotencyRecord
from apps.core.errors import error_body
from apps.core.recovery import Binder, RecoveryConflict, recovery_binder

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Rejected before any work ran: nothing to remember, a corrected retry may reuse the key.
_INPUT_REJECTED = (exceptions.ValidationError, exceptions.ParseError, exceptions.UnsupportedMediaType)
# What a request that raised (rather than answered) is remembered by, once its work started.
_CRASHED = error_body("api_error", "internal_error", "An internal error occurred; retry with the same key.")


class Action(StrEnum):
    RUN = "run"  # the handler runs (a new key, or one taken over with nothing bound)
    REPLAY = "replay"  # the stored response is the answer
    RESUME = "resume"  # the first request's outcome is unknown: resume what it bound


@dataclass
class Claim:
    record: IdempotencyRecord
    action: Action


@dataclass(frozen=True)
class Resume:
    """How a route that moves money answers a retry whose first request's outcome is unknown (it
    raised or answered 5xx after binding, or died and its lock passed).

    ``answer(request, record, **url_kwargs)`` renders the bound object (``record.resource_ids``)
    in the route's success shape and status, after driving it on where the first request would
    have; or returns None when the first request visibly did nothing, and the handler runs again.
    ``acts_on`` (object type, URL argument) binds the record from the start to the existing object
    a route changes (capture, cancel, confirm), since such a route creates nothing."""

    answer: Callable[..., Response | None]
    acts_on: tuple[str, str] | None = None


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


def idempotency_claim(
    *,
    api_key_id: int,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    resumable: bool = False,
    acts_on: tuple[str, str] | None = None,
) -> Claim:
    """Claim ``key`` for this request (committed before returning, under a new owner token), or
    return the stored response to replay, or take over a key whose first request's outcome is
    unknown (``resumable``: a stored 5xx with something bound; any route: an in-flight record whose
    lock has passed). ``acts_on`` (type, id) binds a new record to an existing object.

    Raises ApiError 400 ``idempotency_error`` when the key was used with another request, 409
    ``idempotency_key_in_use`` while its first request (or another retry) is still running."""
    lock = timedelta(seconds=settings.API_IDEMPOTENCY_LOCK_SECONDS)
    owner = secrets.token_hex(16)
    bound: dict[str, object] = {"resource_type": acts_on[0], "resource_ids": [acts_on[1]]} if acts_on else {}
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
                    "owner": owner,
                    **bound,
                },
            )
        if created:
            return Claim(record, Action.RUN)
        with transaction.atomic():
            # The row lock makes the takeover atomic: a concurrent retry waits here, then finds the
            # new lock and gets 409.
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
            resumes = resumable and bool(record.resource_type)
            if record.status == IdempotencyRecord.Status.COMPLETE:
                if not (resumes and (record.response_status or 0) >= 500):
                    return Claim(record, Action.REPLAY)
                # Its answer was a 5xx after work had started: resume what it bound.
            elif record.locked_until > now:
                raise ApiError(
                    409,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "A request with this idempotency key is still being processed; retry later.",
                )
            # Its request died or failed: take the key over.
            record.owner = owner
            record.status = IdempotencyRecord.Status.IN_FLIGHT
            record.locked_until = now + lock
            fields = ["owner", "status", "locked_until"]
            if acts_on and not record.resource_type:
                record.resource_type, record.resource_ids = acts_on[0], [acts_on[1]]
                fields += ["resource_type", "resource_ids"]
                resumes = resumable
            record.save(update_fields=fields)
            return Claim(record, Action.RESUME if resumes else Action.RUN)
    raise ApiError(409, "idempotency_error", "idempotency_key_in_use", "Retry the request.")


def _owned(record: IdempotencyRecord):
    return IdempotencyRecord.objects.filter(pk=record.pk, owner=record.owner)


def idempotency_binder(*, record: IdempotencyRecord) -> Binder:
    """The binder ``recovery_point`` calls during ``record``'s request: binds the record, in the
    caller's transaction, to the first objects created (later points leave it). Raises
    RecoveryConflict when a retry has taken the key over, so the caller's creation rolls back."""

    def bind(object_type: str, object_ids: tuple[str, ...]) -> None:
        mine = _owned(record)
        if mine.filter(resource_type="").update(resource_type=object_type, resource_ids=list(object_ids)):
            return
        if not mine.exists():
            raise RecoveryConflict(f"idempotency key {record.key!r} was taken over by a retry")

    return bind


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: object) -> None:
    _owned(record).update(
        status=IdempotencyRecord.Status.COMPLETE,
        response_status=status,
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    _owned(record).filter(status=IdempotencyRecord.Status.IN_FLIGHT).delete()


def idempotency_settle(*, record: IdempotencyRecord, status: int, body: object, rejected: bool) -> None:
    """What the request leaves behind: its response, or nothing (the key released) when its input
    was rejected before any work ran or it failed with a 5xx before anything was bound."""
    if rejected or (status >= 500 and not _owned(record).exclude(resource_type="").exists()):
        idempotency_release(record=record)
    else:
        idempotency_complete(record=record, status=status, body=body)


def _settle_crashed(record: IdempotencyRecord, *, status: int = 500, body: object = _CRASHED) -> None:
    """Settle a request that raised or answered 5xx. The database may be what failed (a restart
    drops every connection): reconnect once, so that a bound record is stored and its retry resumes
    at once rather than after its lock. Never raises: the request's own error is the one that
    matters."""
    for last in (False, True):
        try:
            idempotency_settle(record=record, status=status, body=body, rejected=False)
            return
        except DbError:
            if last or connection.in_atomic_block:
                log.warning(
                    "idempotency key %r left in flight until its lock passes", record.key, exc_info=True
                )
                return
            connection.close_if_unusable_or_obsolete()


def idempotency_cleanup() -> int:
    """Idempotent: delete the current schema's records older than the retention period."""
    cutoff = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def _replay(record: IdempotencyRecord, key: str) -> Response:
    return Response(
        record.response_body,
        status=record.response_status,
        headers={REPLAYED: "true", HEADER: key},
    )


def _body(response: Response) -> object:
    return json.loads(JSONRenderer().render(response.data)) if response.data is not None else None


def idempotent(handler=None, *, resume: Resume | None = None):
    """Wrap an APIView's ``post`` (``@idempotent``, or ``@idempotent(resume=Resume(...))`` for a
    route that moves money): authentication, permissions and throttling have already run."""
    if handler is None:
        return functools.partial(idempotent, resume=resume)

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
        acts_on = None
        if resume is not None and resume.acts_on is not None:
            acts_on = (resume.acts_on[0], str(kwargs[resume.acts_on[1]]))
        claim = idempotency_claim(
            api_key_id=request.auth.pk,
            key=key,
            method=request.method,
            path=request.path,
            fingerprint=fingerprint,
            resumable=resume is not None,
            acts_on=acts_on,
        )
        record = claim.record
        if claim.action == Action.REPLAY:
            return _replay(record, key)
        rejected = False
        binding = recovery_binder(idempotency_binder(record=record)) if resume else contextlib.nullcontext()
        try:
            with binding:
                response = None
                if claim.action == Action.RESUME and resume is not None:
                    response = resume.answer(request, record, **kwargs)
                    if response is not None:
                        response[REPLAYED] = "true"
                if response is None:
                    response = handler(view, request, *args, **kwargs)
        except Exception as exc:
            if isinstance(exc, RecoveryConflict):  # a retry owns the key now: leave it to that one
                exc = ApiError(
                    409,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "A retry with this idempotency key took it over; retry later.",
                )
            rejected = isinstance(exc, _INPUT_REJECTED) and claim.action == Action.RUN
            try:
                response = view.handle_exception(exc)
            except BaseException:
                _settle_crashed(record)
                raise
        except BaseException:
            _settle_crashed(record)
            raise
        if response.status_code >= 500 and not rejected:
            _settle_crashed(record, status=response.status_code, body=_body(response))
        else:
            idempotency_settle(
                record=record, status=response.status_code, body=_body(response), rejected=rejected
            )
        response[HEADER] = key
        return response

    return wrapper
