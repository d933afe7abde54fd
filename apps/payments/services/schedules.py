"""What payments leaves to later, and when: the durable tasks' handlers, the lease of a gateway
call, and the schedules of the work that finds out what a gateway did or finishes what it was
asked. Every retry here is a durable task's: the one backoff of ``apps.core.durable``
(``retry_backoff``: 2 s, 4 s, 8 s, ... at most an hour between runs; ``retry_span(n)``: how long
``n`` runs last).

An attempt whose outcome is unknown is looked at on two schedules at once. They do not compete:

- The rule is its resolver task (``RESOLVE_HANDLER``, queued when the answer was lost, first run
  ``RESOLVE_BACKOFF_SECONDS[0]`` later). It asks the gateway and, while that tells nothing,
  retries on the durable backoff: ``RESOLVE_MAX_ATTEMPTS`` runs (12), 2 s to 34 min apart, about
  68 minutes in all.
- The safety net is the attempt's ``next_resolve_at``. Each run that learns nothing moves it
  ``RESOLVE_BACKOFF_SECONDS[resolve_count]`` ahead (5 s, 15 s, 1 min, 5 min, 15 min, then an
  hour), and the reconcile job (``payments_reconcile``, every minute) queues a new resolver for an
  unknown attempt whose ``next_resolve_at`` has passed. Each of those delays is longer than the
  resolver's next retry, so while the resolver lives the net finds nothing due; after it has
  given up, the net queues a fresh one (10 runs, about 17 minutes) an hour after its last run,
  and again after that one, until the gateway answers.

A pending attempt past its lease (``attempt_lease``: the process died mid-call) is found by the
same reconcile job. Captures, cancels and refunds are retried by their own tasks
(``OPERATION_*`` below), re-queued when stranded by the same job
(``payment_operations_reconcile``).

The handlers are the package's public names (``apps.payments.services.<name>``): durable tasks
store them, so they never move.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

CONTINUE_HANDLER = "apps.payments.services.payment_continue"
RESOLVE_HANDLER = "apps.payments.services.payment_attempt_resolve"
REFRESH_HANDLER = "apps.payments.services.payment_attempt_refresh"
AUTHENTICATION_LINK_HANDLER = "apps.payments.services.payment_authentication_link_send"
CAPTURE_HANDLER = "apps.payments.services.payment_capture_resolve"
CANCEL_HANDLER = "apps.payments.services.payment_cancel_resolve"
REFUND_HANDLER = "apps.payments.services.refund_execute"
LATE_CHARGE_REVERSE_HANDLER = "apps.payments.services.payment_late_charge_reverse"

# An unknown attempt's ``next_resolve_at``: first resolve after [0]; after its ``resolve_count``-th
# run that learnt nothing, [resolve_count] later (the last entry from then on). The safety net.
RESOLVE_BACKOFF_SECONDS = [2, 5, 15, 60, 300, 900, 3600]
# Runs of the resolver task queued when the answer was lost (the rule): about 68 minutes.
RESOLVE_MAX_ATTEMPTS = len(RESOLVE_BACKOFF_SECONDS) + 5

# A capture, cancel or refund task's first run waits this long: longer than any gateway call can
# take (``GatewayConfig.timeout_seconds``), so it does not race the request still calling.
OPERATION_LEASE = timedelta(seconds=30)
# Runs of a capture, cancel or refund task: about five hours of retries (``retry_span(16)``: 5.1 h).
OPERATION_MAX_ATTEMPTS = 16
# Pending this long with no live durable task (its retries exhausted, or a task lost): stranded.
OPERATION_STRANDED_AFTER = timedelta(minutes=15)
# Pending this long: the reconcile job tells the operator (log error) each time it re-queues it.
OPERATION_ALERT_AFTER = timedelta(days=2)


def attempt_lease() -> timedelta:
    """How long a started attempt's gateway call may still be in flight (``lease_until``)."""
    return timedelta(seconds=settings.PAYMENT_ATTEMPT_LEASE_SECONDS)


# When to ask the gateway about an attempt waiting for the customer, counted from when it began to
# wait: its webhook may never come. After the last, its webhooks (or the storefront) decide.
ACTION_CHECKS = [
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=3),
]


def next_action_check(waiting_since, now):
    """The next time to ask about an attempt waiting since ``waiting_since``; None after the last."""
    return next((waiting_since + d for d in ACTION_CHECKS if waiting_since + d > now), None)


def authentication_expiry() -> timedelta:
    """How long an authentication (3-D Secure) may stay unfinished (``AUTHENTICATION_EXPIRY_SECONDS``)."""
    return timedelta(seconds=settings.AUTHENTICATION_EXPIRY_SECONDS)


def authentication_expired(attempt: Any, now: datetime | None = None) -> bool:
    """Whether ``attempt`` (a PaymentAttempt waiting for the customer) is past its expiry."""
    return attempt.created_at <= (now or timezone.now()) - authentication_expiry()
