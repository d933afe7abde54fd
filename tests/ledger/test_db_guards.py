"""PostgreSQL itself keeps the ledger append-only and double-entry, whatever code (or person)
holds an ordinary connection: these tests go around the services with raw SQL."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, ProgrammingError, connection, transaction

from apps.ledger import services
from apps.ledger.models import Account
from tests.ledger.observe import TABLES, row_counts, rows, scalar

CHANGES = {
    "UPDATE": "UPDATE {table} SET {column} = {column}",
    "DELETE": "DELETE FROM {table}",
    "TRUNCATE": "TRUNCATE {table} CASCADE",
}
SOME_COLUMN = {
    "ledger_event": "stream",
    "ledger_transaction": "recorded_at",
    "ledger_entry": "amount",
    "ledger_chain_link": "chain_hash",
    "ledger_seal": "hash",
}


@pytest.mark.parametrize("operation", list(CHANGES))
@pytest.mark.parametrize("table", TABLES)
def test_append_only_tables_refuse_update_delete_and_truncate(in_posted_and_sealed, table, operation):
    # given a ledger with posted and sealed events (every table has rows)
    schema = in_posted_and_sealed.schema_name
    before = row_counts()
    snapshot = rows(f"SELECT * FROM {table} ORDER BY 1")
    assert before[table] > 0

    # when
    with pytest.raises(ProgrammingError) as err, transaction.atomic(), connection.cursor() as cur:
        cur.execute(CHANGES[operation].format(table=table, column=SOME_COLUMN[table]))

    # then
    assert str(err.value).splitlines()[0] == (
        f"ledger table {schema}.{table} is append-only: {operation} is not allowed"
    )
    assert row_counts() == before
    assert rows(f"SELECT * FROM {table} ORDER BY 1") == snapshot


def insert_event(key: str) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger_event (public_id, type, stream, version, idempotency_key, payload, occurred_at) "
            "VALUES (%s, 'Transfer', %s, 1, %s, '{}'::jsonb, now()) RETURNING id",
            [f"evt_{key}", key, key],
        )
        return cur.fetchone()[0]


def insert_transaction(event_id: int) -> int:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO ledger_transaction (event_id) VALUES (%s) RETURNING id", [event_id])
        return cur.fetchone()[0]


def insert_entries(transaction_id: int, event_id: int, lines: list[tuple[str, str, int]]) -> None:
    """lines: (account code, side, amount) in USD."""
    ids = dict(Account.objects.filter(currency="USD").values_list("code", "id"))
    with connection.cursor() as cur:
        cur.executemany(
            "INSERT INTO ledger_entry (transaction_id, event_id, account_id, currency, side, amount) "
            "VALUES (%s, %s, %s, 'USD', %s, %s)",
            [(transaction_id, event_id, ids[code], side, amount) for code, side, amount in lines],
        )


def test_unbalanced_entries_written_with_raw_sql_are_refused_at_commit(ledger_tenant):
    # given
    before = row_counts()
    seen: dict[str, int] = {}

    # when: the statements all succeed; the deferred check fires at COMMIT
    with pytest.raises(IntegrityError) as err, transaction.atomic():
        event_id = insert_event("raw-1")
        txn_id = insert_transaction(event_id)
        insert_entries(txn_id, event_id, [("suspense", "D", 100), ("platform_revenue", "C", 90)])
        seen["txn"] = txn_id
        seen["entries_inside"] = scalar(
            "SELECT count(*) FROM ledger_entry WHERE transaction_id = %s", [txn_id]
        )

    # then
    assert seen["entries_inside"] == 2
    assert str(err.value).splitlines()[0] == (
        f"journal transaction {seen['txn']} is unbalanced in USD: debits 100 <> credits 90"
    )
    assert row_counts() == before


def test_a_journal_transaction_with_a_single_entry_is_refused_at_commit(ledger_tenant):
    # given
    before = row_counts()
    seen: dict[str, int] = {}

    # when
    with pytest.raises(IntegrityError) as err, transaction.atomic():
        event_id = insert_event("raw-2")
        seen["txn"] = insert_transaction(event_id)
        insert_entries(seen["txn"], event_id, [("suspense", "D", 100)])

    # then
    assert str(err.value).splitlines()[0] == (
        f"journal transaction {seen['txn']} has 1 entries; double entry needs at least 2"
    )
    assert row_counts() == before


def test_set_constraints_immediate_fires_the_balance_check_before_commit(ledger_tenant):
    # given
    before = row_counts()
    seen: dict[str, int] = {}

    # when
    with pytest.raises(IntegrityError) as err, transaction.atomic():
        event_id = insert_event("raw-3")
        seen["txn"] = insert_transaction(event_id)
        insert_entries(seen["txn"], event_id, [("suspense", "D", 100), ("platform_revenue", "C", 90)])
        with connection.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        seen["after_set_constraints"] = 1  # never reached

    # then
    assert "after_set_constraints" not in seen
    assert str(err.value).splitlines()[0] == (
        f"journal transaction {seen['txn']} is unbalanced in USD: debits 100 <> credits 90"
    )
    assert row_counts() == before


def test_entries_cannot_be_added_to_a_posted_journal_transaction_later(ledger_tenant):
    # given a posted (committed) adjustment
    posted = services.ledger_post_manual(
        debit="suspense", credit="platform_revenue", amount=500, currency="USD", reason="r"
    )
    assert posted.transaction_id is not None
    before = row_counts()

    # when: a balanced pair is appended in a later database transaction
    with pytest.raises(IntegrityError) as err, transaction.atomic():
        insert_entries(
            posted.transaction_id, posted.event.pk, [("suspense", "D", 5), ("platform_revenue", "C", 5)]
        )

    # then
    assert str(err.value).splitlines()[0] == (
        f"entries of journal transaction {posted.transaction_id} can only be written with it"
    )
    assert row_counts() == before
    assert (
        scalar("SELECT sum(amount) FROM ledger_entry WHERE transaction_id = %s", [posted.transaction_id])
        == 1000
    )
