"""Recovery points: a service names what it created, inside the transaction that created it.

A request that may be retried (an API call with an ``Idempotency-Key``) installs a *binder* for
its duration (``recovery_binder``). A service that creates something worth resuming (a payment, a
refund, payouts, a subscription) calls ``recovery_point(object_type, *object_ids)`` inside its own
``transaction.atomic()`` block; the binder records the objects against the request in that same
transaction, so either both the object and the binding are committed or neither is ("atomic
phases and recovery points", as Stripe's Brandur Leach describes them). A retry after a crash then
finds what the first request created and resumes it instead of creating a second one.

Services stay unaware of HTTP: without a binder (a worker, a management command, a test calling
the service) ``recovery_point`` does nothing. The first object bound in a request is the one it
answers for; later points in the same request (a subscription's first invoice creating its
payment) leave it unchanged. ``RecoveryConflict`` (raised by a binder) means another request has
taken the key over: the caller's transaction rolls back, so nothing is created twice."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from django.db import connection

Binder = Callable[[str, tuple[str, ...]], None]

_binder: ContextVar[Binder | None] = ContextVar("recovery_binder", default=None)


class RecoveryConflict(Exception):
    """The request no longer owns its recovery record (a retry took it over): what the caller was
    creating must not be committed."""


@contextlib.contextmanager
def recovery_binder(bind: Binder) -> Iterator[None]:
    """Within this block, ``recovery_point(type, *ids)`` calls ``bind(type, ids)``."""
    token = _binder.set(bind)
    try:
        yield
    finally:
        _binder.reset(token)


def recovery_point(object_type: str, *object_ids: str) -> None:
    """Bind the objects just created to the current request, in the caller's transaction (which
    must be open). Does nothing outside a request that asked for it. Raises RecoveryConflict."""
    bind = _binder.get()
    if bind is None:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("recovery_point must be called inside the transaction that creates the object")
    bind(object_type, tuple(object_ids))
