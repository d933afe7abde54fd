"""The retry schedules say in their docstrings how long they last: these pin the claims to the
definitions (apps/core/durable.py's backoff, payments' schedules, the vendors' sends; dunning and
outbound webhooks have their own tests)."""

from __future__ import annotations

import inspect
from datetime import timedelta

from apps.core.durable import MAX_BACKOFF, durable_enqueue, retry_backoff, retry_span
from apps.payments.news import PROCESS_MAX_ATTEMPTS
from apps.payments.services.schedules import (
    OPERATION_MAX_ATTEMPTS,
    RESOLVE_BACKOFF_SECONDS,
    RESOLVE_MAX_ATTEMPTS,
)
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


def test_a_capture_cancel_or_refund_task_is_retried_for_about_five_hours():
    assert round(retry_span(OPERATION_MAX_ATTEMPTS) / timedelta(hours=1), 1) == 5.1


def test_inbound_news_is_processed_again_for_about_three_hours():
    assert round(retry_span(PROCESS_MAX_ATTEMPTS) / timedelta(hours=1), 1) == 3.1


def test_an_unknown_attempts_resolver_is_the_rule_and_next_resolve_at_the_safety_net_behind_it():
    # the rule: the resolver task retries 12 times, 2 s to 34 min apart, about 68 minutes in all
    assert RESOLVE_MAX_ATTEMPTS == 12
    assert retry_backoff(1) == timedelta(seconds=2)
    assert round(retry_backoff(RESOLVE_MAX_ATTEMPTS - 1) / timedelta(minutes=1)) == 34
    assert round(retry_span(RESOLVE_MAX_ATTEMPTS) / timedelta(minutes=1)) == 68
    # the net: after the n-th run that learnt nothing, next_resolve_at moves further ahead than
    # the resolver's next retry, so the reconcile job finds nothing due while the resolver lives
    for runs in range(1, RESOLVE_MAX_ATTEMPTS):
        net = RESOLVE_BACKOFF_SECONDS[min(runs, len(RESOLVE_BACKOFF_SECONDS) - 1)]
        assert net > retry_backoff(runs).total_seconds()
    # after it gave up: a fresh resolver an hour after its last run, with 10 runs of its own
    assert RESOLVE_BACKOFF_SECONDS[-1] == 3600
    assert inspect.signature(durable_enqueue).parameters["max_attempts"].default == 10
    assert round(retry_span(10) / timedelta(minutes=1)) == 17
