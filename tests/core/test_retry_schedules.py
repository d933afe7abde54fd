"""The retry schedules say in their docstrings how long they last: these pin the claims to the
definitions (apps/core/durable.py's backoff, the vendors' sends; dunning and outbound webhooks
have their own tests)."""

from __future__ import annotations

from datetime import timedelta

from apps.core.durable import MAX_BACKOFF, retry_backoff, retry_span
from apps.vendors.funds import SEND_MAX_ATTEMPTS


def test_a_durable_task_waits_two_four_eight_seconds_and_at_most_an_hour():
    assert [retry_backoff(n).total_seconds() for n in range(1, 6)] == [2, 4, 8, 16, 32]
    assert retry_backoff(11) == timedelta(seconds=2048)
    assert retry_backoff(12) == retry_backoff(100) == MAX_BACKOFF == timedelta(hours=1)


def test_retry_span_is_the_sum_of_the_waits_as_the_docstring_says():
    assert retry_span(1) == timedelta()
    assert retry_span(4) == timedelta(seconds=2 + 4 + 8)
    assert round(retry_span(10) / timedelta(minutes=1)) == 17
    assert round(retry_span(16) / timedelta(hours=1), 1) == 5.1


def test_a_transfer_reversal_or_payout_send_is_retried_for_about_two_days():
    assert timedelta(days=1.9) < retry_span(SEND_MAX_ATTEMPTS) < timedelta(days=2.1)
