"""Counting failovers by route from a payment's stored rows (pure: no database)."""

from __future__ import annotations

import pytest

from apps.payments.failovers import RoundRows, failover_route, failovers_count

ORDER = ("primary", "secondary")


@pytest.mark.parametrize(
    ("rows", "route"),
    [
        # charged where routing put it first: no failover
        (RoundRows(attempts=(("pay_a_1", "primary"),)), None),
        # declined and retried at the same gateway is no failover either
        (RoundRows(attempts=(("pay_a_1", "primary"), ("pay_a_2", "primary"))), None),
        # primary failed, secondary charged with its own credential (or a test token)
        (RoundRows(attempts=(("pay_a_1", "primary"), ("pay_a_2", "secondary"))), "direct"),
        # primary failed, secondary charged through the vault
        (
            RoundRows(
                attempts=(("pay_a_1", "primary"), ("pay_a_2", "secondary")), via=frozenset({"pay_a_2"})
            ),
            "vault",
        ),
        # primary's breaker open: routed straight to secondary, directly or through the vault
        (RoundRows(attempts=(("pay_a_1", "secondary"),), breaker_skipped=frozenset({"primary"})), "direct"),
        (
            RoundRows(
                attempts=(("pay_a_1", "secondary"),),
                via=frozenset({"pay_a_1"}),
                breaker_skipped=frozenset({"primary"}),
            ),
            "vault",
        ),
        # secondary's breaker open while primary charged: nothing moved
        (RoundRows(attempts=(("pay_a_1", "primary"),), breaker_skipped=frozenset({"secondary"})), None),
        # a breaker open at a gateway outside the routing order says nothing
        (RoundRows(attempts=(("pay_a_1", "secondary"),), breaker_skipped=frozenset({"tertiary"})), None),
        # charged at secondary because primary holds no credential: routing, not a failover
        (RoundRows(attempts=(("pay_a_1", "secondary"),)), None),
        # primary failed and no other gateway could charge the method
        (
            RoundRows(attempts=(("pay_a_1", "primary"),), error_code="payment_method_unreachable"),
            "impossible",
        ),
        (RoundRows(attempts=(), error_code="payment_method_unreachable"), "impossible"),
        # failed for another reason with nothing tried: nothing to count
        (RoundRows(attempts=(), error_code="no_gateway_available"), None),
    ],
)
def test_failover_route(rows, route):
    assert failover_route(rows, order=ORDER) == route


def test_failovers_count_adds_each_round_once():
    rounds = [
        RoundRows(attempts=(("pay_a_1", "primary"), ("pay_a_2", "secondary"))),
        RoundRows(attempts=(("pay_b_1", "secondary"),), breaker_skipped=frozenset({"primary"})),
        RoundRows(attempts=(("pay_c_1", "primary"), ("pay_c_2", "secondary")), via=frozenset({"pay_c_2"})),
        RoundRows(attempts=(("pay_d_1", "primary"),), error_code="payment_method_unreachable"),
        RoundRows(attempts=(("pay_e_1", "primary"),)),
    ]

    assert failovers_count(rounds, order=ORDER) == {"direct": 2, "vault": 1, "impossible": 1}
    assert failovers_count([], order=ORDER) == {"direct": 0, "vault": 0, "impossible": 0}
