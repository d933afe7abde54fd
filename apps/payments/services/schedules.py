"""What payments leaves to later, and when: the durable tasks' handlers, the lease of a gateway
call, and the schedules of the work that finds out what a gateway did.

The handlers are the package's public names (``apps.payments.services.<name>``): durable tasks
store them, so they never move.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

CONTINUE_HANDLER = "apps.payments.services.payment_continue"
RESOLVE_HANDLER = "apps.payments.services.payment_attempt_resolve"
REFRESH_HANDLER = "apps.payments.services.payment_attempt_refresh"
CAPTURE_HANDLER = "apps.payments.services.payment_capture_resolve"
CANCEL_HANDLER = "apps.payments.services.payment_cancel_resolve"
REFUND_HANDLER = "apps.payments.services.refund_execute"
LATE_CHARGE_REVERSE_HANDLER = "apps.payments.services.payment_late_charge_reverse"

# An attempt whose outcome is unknown is resolved after these delays (its ``resolve_count``-th).
RESOLVE_BACKOFF_SECONDS = [2, 5, 15, 60, 300, 900, 3600]


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
