"""Reads the ledger's tables directly, so tests check the stored rows rather than the code's own view."""

from __future__ import annotations

import contextlib
import time

from django.db import connection, transaction

from apps.ledger import integrity

TABLES = ("ledger_event", "ledger_transaction", "ledger_entry", "ledger_chain_link", "ledger_seal")


def scalar(sql: str, params: list | None = None):
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchone()[0]


def rows(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return cur.fetchall()


def row_counts() -> dict[str, int]:
    """How many rows each append-only table and the accounts table hold."""
    return {t: scalar(f"SELECT count(*) FROM {t}") for t in (*TABLES, "ledger_account")}


def entries_of(event_id: int) -> list[tuple[str, str, str, int]]:
    """(account code, currency, side, amount) of an event's entries, in insertion order."""
    return rows(
        "SELECT a.code, en.currency, en.side, en.amount FROM ledger_entry en "
        "JOIN ledger_account a ON a.id = en.account_id WHERE en.event_id = %s ORDER BY en.id",
        [event_id],
    )


def nonzero_balances() -> dict[tuple[str, str], int]:
    """(code, currency) -> net (debits - credits) from the balance projection, zero rows left out."""
    return {
        (code, cur): net
        for code, cur, net in rows(
            "SELECT a.code, a.currency, b.debits - b.credits FROM ledger_balance b "
            "JOIN ledger_account a ON a.id = b.account_id"
        )
        if net != 0
    }


def nets_from_entries() -> dict[tuple[str, str], int]:
    """(code, currency) -> net summed from the entries themselves, zero sums left out."""
    return {
        (code, cur): int(net)
        for code, cur, net in rows(
            "SELECT a.code, en.currency, sum(CASE WHEN en.side = 'D' THEN en.amount ELSE -en.amount END) "
            "FROM ledger_entry en JOIN ledger_account a ON a.id = en.account_id GROUP BY 1, 2"
        )
        if net != 0
    }


def nets_from_replay() -> dict[tuple[str, str], int]:
    replayed = integrity.replay_balances()
    return {key: d - c for key, (d, c) in replayed.balances.items() if d - c != 0}


def unbalanced_transactions() -> list[tuple[int, str, int]]:
    """(transaction id, currency, debits - credits) of every journal transaction that does not balance."""
    return rows(
        "SELECT transaction_id, currency, sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) "
        "FROM ledger_entry GROUP BY 1, 2 HAVING sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) <> 0"
    )


def net_per_currency() -> dict[str, int]:
    """currency -> sum of every balance's net; double entry keeps each at zero."""
    return {
        cur: int(net)
        for cur, net in rows(
            "SELECT a.currency, sum(b.debits - b.credits) FROM ledger_balance b "
            "JOIN ledger_account a ON a.id = b.account_id GROUP BY 1"
        )
    }


def unsealed_count() -> int:
    return scalar(
        "SELECT count(*) FROM ledger_event e "
        "WHERE NOT EXISTS (SELECT 1 FROM ledger_chain_link l WHERE l.event_id = e.id)"
    )


def wait_for_seal_horizon(timeout: float = 120) -> None:
    """Wait until every event's writer is below the snapshot horizon, so one ``ledger_seal`` takes
    them all. A transaction elsewhere on the same server (another test run, a benchmark) can hold
    the horizon back for a moment."""
    deadline = time.monotonic() + timeout
    while not scalar(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint > coalesce(max(txid), 0) "
        "FROM ledger_event"
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the snapshot horizon did not pass the ledger's events")
        time.sleep(0.05)


def seal_everything(*, max_events: int = integrity.SEAL_MAX_EVENTS) -> integrity.SealResult:
    """Seal every event now; returns what ``ledger_seal`` reported."""
    wait_for_seal_horizon()
    result = integrity.ledger_seal(max_events=max_events)
    assert unsealed_count() == 0
    return result


@contextlib.contextmanager
def triggers_off():
    """Bypass the append-only triggers as a superuser would (``session_replication_role = replica``
    also turns off foreign-key checks): the attacker the hash chain exists for."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        yield cur
        cur.execute("SET LOCAL session_replication_role = DEFAULT")
