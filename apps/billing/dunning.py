"""The dunning schedule: when a failed invoice is tried again. Pure (no database); the one home of
the rule, which ``collection`` applies and the marketplace's ``DunningPolicy`` parametrises.

Attempt 1 is the invoice's first charge. After attempt *n* fails:

- the issuer's ``do_not_try_again`` (or the decline table's ``stop``) stops automatic retries: the
  invoice waits, unpaid, until the customer gives a new card or its dunning window ends (then the
  final action);
- else attempt *n+1* is due ``schedule_days[n-1]`` days after attempt 1 (the last entry again when
  the schedule is shorter; *n* days after attempt 1 without a schedule), but at least an hour
  after the failure (``MIN_RETRY_GAP``) and, after the issuer's ``try_again_later`` (or the
  table's ``retry_later``), at least ``advice_wait_hours`` after it;
- there is no attempt *n+1* when *n* is ``max_attempts`` or it would fall after the invoice's
  dunning window (``window_days`` from the invoice's first attempt, or from the customer's new
  card): the policy's final action is applied instead.

By default (``DEFAULT_SCHEDULE_DAYS``): 8 attempts on days 0, 1, 3, 5, 7, 9, 12, 14.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from apps.billing.models import DunningPolicy

DEFAULT_SCHEDULE_DAYS = [1, 3, 5, 7, 9, 12, 14]  # attempts 2..8, days after the first: 8 over 14 days
MIN_RETRY_GAP = timedelta(hours=1)

STOP_ADVICE, WAIT_ADVICE = "do_not_try_again", "try_again_later"
STOP_ACTION, WAIT_ACTION = "stop", "retry_later"  # the decline table's actions (DeclineRule.Action)


def dunning_window_end(policy: DunningPolicy, start: datetime) -> datetime:
    """The end of an invoice's dunning window that starts at ``start``."""
    return start + timedelta(days=policy.window_days)


def next_attempt_at(
    *, policy: DunningPolicy, first_at: datetime, number: int, now: datetime, wait_for_advice: bool
) -> datetime | None:
    """When attempt ``number + 1`` is due after attempt ``number`` failed at ``now``, or None when
    the policy is spent (attempts, or its window counted from ``first_at``)."""
    schedule = policy.schedule_days or []
    if number >= policy.max_attempts:
        return None
    index = min(number - 1, len(schedule) - 1)
    days = schedule[index] if schedule else number
    at = first_at + timedelta(days=days)
    if wait_for_advice:
        at = max(at, now + timedelta(hours=policy.advice_wait_hours))
    at = max(at, now + MIN_RETRY_GAP)
    if at > dunning_window_end(policy, first_at):
        return None
    return at


@dataclass(frozen=True)
class DunningStep:
    """What follows a failed attempt: ``retry`` at ``at``; ``stop`` (no automatic retries; the
    final action at ``at``, the window's end, unless a new card comes first); or ``final`` (the
    final action now)."""

    kind: str  # "retry", "stop" or "final"
    at: datetime | None = None


def final_action(policy: DunningPolicy, *, subscription_canceled: bool) -> str:
    """What ends dunning: ``cancel`` (the invoice uncollectible, the subscription canceled) when
    the policy says so or the subscription is canceled already, else ``unpaid`` (the subscription
    unpaid, the invoice left open)."""
    if subscription_canceled or policy.final_action == DunningPolicy.FinalAction.CANCEL:
        return "cancel"
    return "unpaid"


def after_failure(
    *,
    policy: DunningPolicy,
    number: int,
    advice_code: str,
    action: str,
    first_at: datetime,
    now: datetime,
    window_end: datetime | None = None,
) -> DunningStep:
    """The step after attempt ``number`` failed at ``now`` with the issuer's ``advice_code`` and
    the decline table's ``action``. ``window_end``: the invoice's dunning window (default
    ``window_days`` from ``first_at``, the first attempt)."""
    end = window_end or dunning_window_end(policy, first_at)
    if advice_code == STOP_ADVICE or action == STOP_ACTION:
        return DunningStep("stop", end)
    wait = advice_code == WAIT_ADVICE or action == WAIT_ACTION
    at = next_attempt_at(policy=policy, first_at=first_at, number=number, now=now, wait_for_advice=wait)
    if at is None or at > end:
        return DunningStep("final")
    return DunningStep("retry", at)
