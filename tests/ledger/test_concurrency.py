"""Many writer processes at once against one marketplace: no lost update, no overdrawn protected
account, double entry intact, every idempotency key posted once, versions unique and gapless."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter, defaultdict

import pytest
from django.conf import settings
from django.db import connections

from apps.ledger import integrity
from tests.ledger.concurrent_poster import HOT_STREAM, SHARED_KEYS, VENDOR
from tests.ledger.observe import (
    net_per_currency,
    nets_from_entries,
    nets_from_replay,
    nonzero_balances,
    rows,
    seal_everything,
)
from tests.support import BASE, database_url_for_tests

WRITERS = 4
POSTINGS = 150


def watch_vendor(schema: str, stop: threading.Event, lowest: dict[str, int]) -> None:
    """Poll the protected account's balance (credit-normal) and keep the lowest value seen."""
    conn = connections.create_connection("default")
    try:
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute(
                    f'SELECT a.currency, b.credits - b.debits FROM "{schema}".ledger_balance b '
                    f'JOIN "{schema}".ledger_account a ON a.id = b.account_id WHERE a.code = %s',
                    [VENDOR],
                )
                for currency, balance in cur.fetchall():
                    lowest[currency] = min(lowest.get(currency, 0), balance)
                stop.wait(0.005)
    finally:
        conn.close()


@pytest.mark.slow
def test_concurrent_writers_lose_nothing_and_never_overdraw(ledger_tenant):
    # given writer processes, each connected and waiting in the marketplace's schema
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "WARNING",
    }
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.ledger.concurrent_poster",
                ledger_tenant.schema_name,
                str(seed),
                str(POSTINGS),
            ],
            cwd=BASE,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(WRITERS)
    ]
    stop, lowest = threading.Event(), dict[str, int]()
    watcher = threading.Thread(target=watch_vendor, args=(ledger_tenant.schema_name, stop, lowest))
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline() == "ready\n"
        watcher.start()

        # when they all post at once
        for w in writers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        outputs = [w.communicate(timeout=300)[0] for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
        stop.set()
        if watcher.is_alive():
            watcher.join()

    # then every writer finished cleanly
    assert [w.returncode for w in writers] == [0] * WRITERS
    reports = [json.loads(out.splitlines()[-1]) for out in outputs]

    # no lost update: the projection equals what the writers say they moved, the entries and a replay
    moved: dict[tuple[str, str], int] = defaultdict(int)
    for report in reports:
        for key, net in report["moved"].items():
            code, currency = key.split("|")
            moved[(code, currency)] += net
    expected = {key: net for key, net in moved.items() if net != 0}
    assert nonzero_balances() == expected
    assert nets_from_entries() == expected
    assert nets_from_replay() == expected
    assert rows(
        "SELECT count(*) FROM ledger_balance b WHERE (b.debits, b.credits) <> (SELECT "
        "coalesce(sum(amount) FILTER (WHERE side = 'D'), 0), coalesce(sum(amount) FILTER (WHERE side = 'C'), 0) "
        "FROM ledger_entry e WHERE e.account_id = b.account_id)"
    ) == [(0,)]

    # the protected account was never seen below zero, and the guard had work to do
    assert all(balance >= 0 for balance in lowest.values()), lowest
    assert all(-nonzero_balances().get((VENDOR, cur), 0) >= 0 for cur in ("USD", "EUR"))
    assert sum(r["refused"] for r in reports) > 0

    # double entry holds per currency
    assert net_per_currency() == {"USD": 0, "EUR": 0}

    # each shared idempotency key was posted exactly once, by exactly one writer
    created = Counter(k for r in reports for k in r["shared_created"])
    assert set(created.values()) == {1}
    per_key = dict(
        rows(
            "SELECT idempotency_key, count(*) FROM ledger_event WHERE idempotency_key LIKE 'shared-%%' GROUP BY 1"
        )
    )
    assert per_key == {f"shared-{k}": 1 for k in created}
    assert len(created) <= SHARED_KEYS

    # the hot stream's versions are exactly 1..n
    hot = [
        v
        for (v,) in rows("SELECT version FROM ledger_event WHERE stream = %s ORDER BY version", [HOT_STREAM])
    ]
    assert hot == list(range(1, sum(r["hot"] for r in reports) + 1))

    # and the whole ledger seals and verifies
    seal_everything()
    report = integrity.ledger_verify()
    assert report.problems == []
    assert report.events == report.sealed == sum(r["posted"] + len(r["shared_created"]) for r in reports)
