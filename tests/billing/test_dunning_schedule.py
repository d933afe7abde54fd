"""The dunning schedule (apps/billing/dunning.py), pure: when a failed invoice is tried again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.billing.dunning import DEFAULT_SCHEDULE_DAYS, after_failure, final_action, next_attempt_at
from apps.billing.models import DunningPolicy

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)
DEFAULT = DunningPolicy(schedule_days=DEFAULT_SCHEDULE_DAYS)  # 8 attempts, 14 days, 72 h advice wait


def days(when: datetime | None) -> float | None:
    return None if when is None else (when - T0) / timedelta(days=1)


def day(when: datetime) -> float:
    return (when - T0) / timedelta(days=1)


def test_the_default_schedule_is_eight_attempts_on_days_0_1_3_5_7_9_12_14():
    due, at = [0.0], T0
    for number in range(1, 9):
        nxt = next_attempt_at(policy=DEFAULT, first_at=T0, number=number, now=at, wait_for_advice=False)
        if nxt is None:
            break
        due.append(day(nxt))
        at = nxt
    assert due == [0, 1, 3, 5, 7, 9, 12, 14]


def test_attempt_n_plus_1_is_due_on_schedule_days_n_minus_1():
    policy = DunningPolicy(schedule_days=[2, 10], max_attempts=5, window_days=30)
    at = [
        next_attempt_at(policy=policy, first_at=T0, number=n, now=T0, wait_for_advice=False)
        for n in (1, 2, 3)
    ]
    assert [days(a) for a in at] == [2, 10, 10]  # the last entry again when the schedule is shorter
    unscheduled = DunningPolicy(schedule_days=[], max_attempts=5, window_days=30)
    assert (
        days(next_attempt_at(policy=unscheduled, first_at=T0, number=3, now=T0, wait_for_advice=False)) == 3
    )


def test_issuer_advice_to_wait_and_the_hour_between_attempts():
    waited = next_attempt_at(policy=DEFAULT, first_at=T0, number=1, now=T0, wait_for_advice=True)
    assert waited == T0 + timedelta(hours=72)
    late = T0 + timedelta(days=3, minutes=30)  # attempt 2 failed late: attempt 3 (day 3) not at once
    assert next_attempt_at(
        policy=DEFAULT, first_at=T0, number=2, now=late, wait_for_advice=False
    ) == late + timedelta(hours=1)


def test_what_follows_a_failure():
    step = after_failure(policy=DEFAULT, number=1, advice_code="", action="failover", first_at=T0, now=T0)
    assert (step.kind, days(step.at)) == ("retry", 1)
    step = after_failure(
        policy=DEFAULT, number=1, advice_code="do_not_try_again", action="", first_at=T0, now=T0
    )
    assert (step.kind, days(step.at)) == ("stop", 14)  # the final action at the window's end
    step = after_failure(policy=DEFAULT, number=2, advice_code="", action="stop", first_at=T0, now=T0)
    assert step.kind == "stop"
    step = after_failure(policy=DEFAULT, number=8, advice_code="", action="failover", first_at=T0, now=T0)
    assert (step.kind, step.at) == ("final", None)
    # a new card restarted the window: attempts go on to its end, not past it
    window_end = T0 + timedelta(days=5)
    step = after_failure(
        policy=DEFAULT, number=4, advice_code="", action="", first_at=T0, now=T0, window_end=window_end
    )
    assert step.kind == "final"  # attempt 5 would be on day 7


def test_the_final_action():
    assert final_action(DEFAULT, subscription_canceled=False) == "cancel"
    unpaid = DunningPolicy(final_action=DunningPolicy.FinalAction.UNPAID)
    assert final_action(unpaid, subscription_canceled=False) == "unpaid"
    assert final_action(unpaid, subscription_canceled=True) == "cancel"
