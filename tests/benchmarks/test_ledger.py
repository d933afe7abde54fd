"""Ledger throughput, each figure beside its same-run baseline.

1. Transfers/s through ``ledger_record`` with 8 and 32 writer processes, spread over ~200 accounts,
   against raw psycopg 3 doing the same rows (event, transaction, two entries, two balance updates)
   in one transaction on plain tables of the same shape.
2. The same with every transfer touching one hot clearing account.
3. Seal, replay and verify over LEDGER_BENCH_EVENTS events (default 1,000,000), written through
   ``ledger_record`` 1000 to a transaction (that rate is printed too).

LEDGER_BENCH_EVENTS shrinks part 3 for quick runs; LEDGER_BENCH_SECONDS (default 5) is the length
of each concurrent phase. Figures are printed, never asserted; correctness checks are asserted.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import psycopg
import pytest
from django.db import transaction
from django_tenants.utils import tenant_context

from apps.ledger import integrity
from apps.ledger.models import Balance, LedgerEvent
from apps.ledger.services import EventSpec, account_ensure, ledger_record
from apps.tenants.db import tenant_connection
from apps.tenants.services import marketplace_create
from tests.benchmarks.ledger_workers import (
    CURRENCY,
    HOT,
    RAW_SCHEMA_SQL,
    account_code,
    writer_main,
)
from tests.benchmarks.pool import ProcessPool, percentile
from tests.support import database_url_for_tests

pytestmark = pytest.mark.bench

ACCOUNTS = 200
WRITERS = (8, 32)
SECONDS = float(os.environ.get("LEDGER_BENCH_SECONDS", "5"))
EVENTS = int(os.environ.get("LEDGER_BENCH_EVENTS", "1000000"))
BATCH = 1000


def _marketplace():
    slug = "bench_" + uuid.uuid4().hex[:10]
    return marketplace_create(
        slug=slug, name=slug, domain=f"{slug.replace('_', '-')}.localhost", owner_email="o@b.test"
    ).marketplace


def _rate(n: int, seconds: float, unit: str) -> str:
    return f"{n / seconds:,.0f} {unit}/s" if seconds > 0 else f"n/a {unit}/s"


# --------------------------------------------------------------------------- concurrent writers


def _raw_schema_create(db_url: str) -> str:
    name = "bench_raw_" + uuid.uuid4().hex[:8]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(RAW_SCHEMA_SQL.format(s=name))
        conn.execute(
            f"INSERT INTO {name}.balance (account_id) SELECT generate_series(0, %s)", [ACCOUNTS]
        )  # 0..ACCOUNTS-1 and the hot one (ACCOUNTS)
    return name


def _raw_schema_drop(db_url: str, name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _latency(r: dict) -> str:
    return f"p50 {percentile(r['lat'], 0.5) * 1000:.1f} ms, p99 {percentile(r['lat'], 0.99) * 1000:.1f} ms"


def test_ledger_concurrent_transfers(committed, bench_report):
    db_url = database_url_for_tests()
    market = _marketplace()
    with tenant_context(market):
        for n in range(ACCOUNTS):
            account_ensure(code=account_code(n), currency=CURRENCY)
        account_ensure(code=HOT, currency=CURRENCY)
        events_before = LedgerEvent.objects.count()
    raw_schema = _raw_schema_create(db_url)
    writers = ProcessPool(
        writer_main, (db_url, market.schema_name, raw_schema, ACCOUNTS), max(WRITERS), "writer"
    )
    results: dict[tuple[bool, int, str], dict] = {}
    try:
        for hot in (False, True):
            for n in WRITERS:
                for mode in ("raw", "ledger"):
                    phase = f"{'hot' if hot else 'spread'}{n}{mode}"
                    results[(hot, n, mode)] = writers.run(
                        {"phase": phase, "mode": mode, "hot": hot}, n=n, seconds=SECONDS
                    )
    finally:
        writers.close()
        _raw_schema_drop(db_url, raw_schema)

    rows = []
    for hot in (False, True):
        for n in WRITERS:
            led, raw = results[(hot, n, "ledger")], results[(hot, n, "raw")]
            case = f"{'hot account' if hot else f'spread over {ACCOUNTS} accounts'}, {n} writers"
            ratio = led["rate"] / raw["rate"] if raw["rate"] else float("nan")
            target = "" if hot else "; target >= 50%"
            rows += [
                (f"{case}: ledger_record", f"{led['rate']:,.0f} transfers/s  ({_latency(led)})"),
                (f"{case}: baseline raw psycopg", f"{raw['rate']:,.0f} transfers/s  ({_latency(raw)})"),
                (f"{case}: ledger / baseline", f"{ratio:.0%}{target}"),
            ]
            for mode, r in (("ledger", led), ("raw", raw)):
                if r["errors"]:
                    rows.append((f"{case}: {mode} errors", str(r["errors"])))
    bench_report(f"ledger_record, concurrent writer processes ({SECONDS:g} s per phase)", rows)

    # Correctness under concurrency: every reported transfer is there, and the books balance.
    with tenant_context(market):
        recorded = LedgerEvent.objects.count() - events_before
        warmups = max(WRITERS) * 10
        assert (
            recorded == sum(r["count"] for (_, _, mode), r in results.items() if mode == "ledger") + warmups
        )
        assert sum(b.debits - b.credits for b in Balance.objects.all()) == 0
        report = integrity.ledger_verify()
        assert report.ok, report.problems


# --------------------------------------------------------------------------- seal, replay, verify


def _specs(batch_no: int, rng: random.Random) -> list[EventSpec]:
    specs = []
    for i in range(BATCH):
        a, b = rng.sample(range(ACCOUNTS), 2)
        specs.append(
            EventSpec(
                event_type="Transfer",
                stream=f"import_{batch_no:06d}",
                payload={
                    "debit": account_code(a),
                    "credit": account_code(b),
                    "amount": rng.randint(1, 100_000),
                    "currency": CURRENCY,
                },
                idempotency_key=f"import:{batch_no}:{i}",
            )
        )
    return specs


T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _scan_all_events(db_url: str, schema: str) -> tuple[float, int]:
    """Baseline for replay/verify: fetch every event's (id, type, payload) with raw psycopg."""
    with psycopg.connect(db_url) as conn:
        t0 = time.perf_counter()
        n = 0
        with conn.cursor(name="scan") as cur:
            cur.itersize = 20_000
            cur.execute(f"SELECT id, type, payload::text FROM {schema}.ledger_event ORDER BY id")
            for _ in cur:
                n += 1
        return time.perf_counter() - t0, n


def _record(specs: list[EventSpec]) -> None:
    for s in specs:
        ledger_record(
            event_type=s.event_type,
            stream=s.stream,
            payload=s.payload,
            idempotency_key=s.idempotency_key,
            savepoint=False,
        )


def test_ledger_seal_replay_verify(committed, bench_report):
    db_url = database_url_for_tests()
    market = _marketplace()
    rng = random.Random(42)
    batches = max(1, EVENTS // BATCH)
    with tenant_context(market):
        for n in range(ACCOUNTS):
            account_ensure(code=account_code(n), currency=CURRENCY)

        # Baseline: the same transfers one ledger_record call (one transaction) at a time.
        single = 1000
        t_single, _ = _timed(lambda: _record(_specs(-1, rng)[:single]))
        # The history the rest of this test reads: BATCH events to a transaction.
        per_batch = []
        for b in range(batches):
            specs = _specs(b, rng)
            t0 = time.perf_counter()
            with transaction.atomic():
                _record(specs)
            per_batch.append(time.perf_counter() - t0)
        t_batch = sum(per_batch)
        built = batches * BATCH
        tenth = max(1, batches // 10)
        t_first, t_last = sum(per_batch[:tenth]), sum(per_batch[-tenth:])
        total = LedgerEvent.objects.count()

        t_seal, sealed = _timed(integrity.ledger_seal)
        assert sealed.events == total

        t_replay, replayed = _timed(integrity.replay_balances)
        assert replayed.events == total
        live = {
            (b.account.code, b.account.currency): [b.debits, b.credits]
            for b in Balance.objects.select_related("account")
            if b.debits or b.credits
        }
        assert replayed.balances == live

        t_verify, report = _timed(integrity.ledger_verify)
        assert report.ok, report.problems
        assert report.events == total and report.sealed == total
        schema = tenant_connection().schema_name
    tenant_connection().set_schema_to_public()
    t_scan, scanned = _scan_all_events(db_url, schema)

    bench_report(
        f"ledger history, seal, replay, verify over {total:,} events",
        [
            (
                f"ledger_record, {BATCH} transfers per transaction ({built:,} events)",
                f"{_rate(built * 2, t_batch, 'entries')}  ({_rate(built, t_batch, 'events')}, {t_batch:.1f} s)",
            ),
            (
                f"  first / last {tenth} transactions",
                f"{_rate(tenth * BATCH * 2, t_first, 'entries')} / {_rate(tenth * BATCH * 2, t_last, 'entries')}",
            ),
            (
                "baseline: ledger_record one at a time, 1 writer",
                f"{_rate(single * 2, t_single, 'entries')}  ({_rate(single, t_single, 'events')})",
            ),
            ("ledger_seal", f"{_rate(total, t_seal, 'events')}  ({t_seal:.1f} s, {sealed.blocks} blocks)"),
            (
                "replay_balances",
                f"{_rate(total, t_replay, 'events')}  ({t_replay:.1f} s; target >= 50,000 events/s)",
            ),
            (
                "ledger_verify",
                f"{_rate(total, t_verify, 'events')}  ({t_verify:.1f} s; target >= 100,000 events/s)",
            ),
            (
                "baseline: raw psycopg scan of every event (id, type, payload)",
                f"{_rate(scanned, t_scan, 'events')}  ({t_scan:.1f} s)",
            ),
        ],
    )
