"""How dunning recoveries are counted by route (pure: no database)."""

from __future__ import annotations

from apps.billing.selectors import recoveries_count
from apps.payments.failovers import RoundRows


def row(payment: str, *, declined_at: str, paid_by: str | None) -> dict:
    return {"payment": payment, "gateway": declined_at, "recovered": paid_by is not None, "paid_by": paid_by}


def test_recoveries_count_by_route():
    rows = [
        row("pay_a", declined_at="primary", paid_by="secondary"),  # direct, at another gateway
        row("pay_b", declined_at="primary", paid_by="secondary"),  # through the vault
        row("pay_c", declined_at="secondary", paid_by="secondary"),  # the vault again, same gateway
        row("pay_d", declined_at="primary", paid_by="primary"),  # the same gateway, later
        row("pay_e", declined_at="primary", paid_by=None),  # nowhere else could charge it
        row("pay_f", declined_at="primary", paid_by=None),  # not recovered, for another reason
    ]
    last_rounds = {
        "pay_a": RoundRows(attempts=(("pay_a_3", "primary"), ("pay_a_4", "secondary"))),
        "pay_b": RoundRows(
            attempts=(("pay_b_3", "primary"), ("pay_b_4", "secondary")), via=frozenset({"pay_b_4"})
        ),
        "pay_c": RoundRows(attempts=(("pay_c_2", "secondary"),), via=frozenset({"pay_c_2"})),
        "pay_d": RoundRows(attempts=(("pay_d_2", "primary"),)),
        "pay_e": RoundRows(attempts=(("pay_e_3", "primary"),), error_code="payment_method_unreachable"),
        "pay_f": RoundRows(attempts=(("pay_f_3", "primary"),)),
    }

    counts = recoveries_count(rows, last_rounds=last_rounds, unreachable={"pay_e": 2})

    assert counts == {"direct": 1, "vault": 2, "same_gateway": 1, "impossible": 1}
