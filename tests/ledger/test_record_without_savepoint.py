"""``ledger_record(savepoint=False)``: the same rows as with a savepoint, no SAVEPOINT round trips,
and a failure leaves the surrounding transaction nothing to do but roll back whole."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.ledger import selectors, services
from apps.ledger.errors import InsufficientFunds
from tests.ledger.observe import row_counts


def transfer(debit: str, credit: str, amount: int) -> dict:
    return {"debit": debit, "credit": credit, "amount": amount, "currency": "USD"}


def test_it_posts_the_same_without_savepoints(ledger_tenant):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        first = services.ledger_record(
            event_type="Transfer",
            stream="s1",
            payload=transfer("processor_clearing:sim", "platform_revenue", 700),
            idempotency_key="k1",
            savepoint=False,
        )
        again = services.ledger_record(
            event_type="Transfer",
            stream="s1",
            payload=transfer("processor_clearing:sim", "platform_revenue", 700),
            idempotency_key="k1",
            savepoint=False,
        )

    assert not any("SAVEPOINT" in str(q["sql"]) for q in queries.captured_queries)
    assert (first.created, again.created, again.event.pk) == (True, False, first.event.pk)
    assert first.event.version == 1
    assert selectors.balance_get(code="platform_revenue", currency="USD") == 700


def test_a_refusal_leaves_only_a_rollback_of_the_whole_transaction(ledger_tenant):
    services.ledger_record(
        event_type="Transfer",
        stream="fund",
        payload=transfer("processor_clearing:sim", "vendor_payable:v1", 100),
        idempotency_key="fund",
    )
    before = row_counts()

    with pytest.raises(InsufficientFunds), transaction.atomic():
        services.ledger_record(
            event_type="ManualAdjustment",
            stream="other",
            payload={**transfer("suspense", "platform_revenue", 5), "reason": "written, then rolled back"},
            idempotency_key="other",
            savepoint=False,
        )
        services.ledger_record(
            event_type="Transfer",
            stream="payout",
            payload=transfer("vendor_payable:v1", "processor_clearing:sim", 101),
            idempotency_key="payout",
            savepoint=False,
        )

    assert row_counts() == before
    assert selectors.balance_get(code="vendor_payable:v1", currency="USD") == 100
