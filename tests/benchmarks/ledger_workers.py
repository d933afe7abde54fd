"""Writer processes for the ledger benchmark (tests/benchmarks/test_ledger.py).

Started with multiprocessing "spawn", so nothing here imports Django at module level: each
writer sets its environment, calls ``django.setup()`` and enters the benchmark marketplace.
A writer holds two connections: Django's (for ``ledger_record``) and a raw psycopg 3 one (for
the baseline, which writes plain tables of the same shape in a scratch schema).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
import traceback
from typing import Any

from cryptography.fernet import Fernet

CURRENCY = "USD"
HOT = "processor_clearing:hot"


def account_code(n: int) -> str:
    return f"processor_clearing:acct{n:03d}"


# The baseline's tables: same columns, keys and indexes as the ledger's, no triggers or FKs.
RAW_SCHEMA_SQL = """
CREATE TABLE {s}.event (
    id bigserial PRIMARY KEY, public_id varchar(40) NOT NULL UNIQUE, type varchar(100) NOT NULL,
    stream varchar(200) NOT NULL, version integer NOT NULL, idempotency_key varchar(255) NOT NULL UNIQUE,
    payload jsonb NOT NULL, occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
    txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), UNIQUE (stream, version));
CREATE INDEX ON {s}.event (txid, id);
CREATE INDEX ON {s}.event (type, id);
CREATE INDEX ON {s}.event (recorded_at);
CREATE TABLE {s}.txn (
    id bigserial PRIMARY KEY, event_id bigint NOT NULL UNIQUE, recorded_at timestamptz NOT NULL DEFAULT now(),
    txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint));
CREATE TABLE {s}.entry (
    id bigserial PRIMARY KEY, transaction_id bigint NOT NULL, event_id bigint NOT NULL,
    account_id bigint NOT NULL, currency varchar(3) NOT NULL, side varchar(1) NOT NULL, amount bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON {s}.entry (transaction_id);
CREATE INDEX ON {s}.entry (account_id, event_id);
CREATE INDEX ON {s}.entry (account_id, recorded_at);
CREATE INDEX ON {s}.entry (event_id);
CREATE TABLE {s}.balance (
    account_id bigint PRIMARY KEY, debits bigint NOT NULL DEFAULT 0, credits bigint NOT NULL DEFAULT 0,
    last_event_id bigint, updated_at timestamptz NOT NULL DEFAULT now());
"""


def _raw_transfer(conn: Any, s: str, tag: str, debit: int, credit: int, amount: int) -> None:
    payload = json.dumps(
        {"amount": amount, "credit": f"acct{credit}", "currency": CURRENCY, "debit": f"acct{debit}"},
        sort_keys=True,
        separators=(",", ":"),
    )
    public_id = "evt_" + secrets.token_urlsafe(18)
    stream = "xfer_" + tag
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {s}.event (public_id, type, stream, version, idempotency_key, payload, occurred_at) "
            f"VALUES (%s, 'Transfer', %s, (SELECT COALESCE(max(version), 0) + 1 FROM {s}.event "
            "WHERE stream = %s), %s, %s::jsonb, now()) RETURNING id",
            [public_id, stream, stream, tag, payload],
        )
        (event_id,) = cur.fetchone()
        cur.execute(f"INSERT INTO {s}.txn (event_id) VALUES (%s) RETURNING id", [event_id])
        (txn_id,) = cur.fetchone()
        for account, side in ((debit, "D"), (credit, "C")):
            cur.execute(
                f"INSERT INTO {s}.entry (transaction_id, event_id, account_id, currency, side, amount) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [txn_id, event_id, account, CURRENCY, side, amount],
            )
        for account, side in sorted(((debit, "D"), (credit, "C"))):  # id order: no deadlocks
            column = "debits" if side == "D" else "credits"
            cur.execute(
                f"UPDATE {s}.balance SET {column} = {column} + %s, last_event_id = %s, updated_at = now() "
                "WHERE account_id = %s",
                [amount, event_id, account],
            )


def writer_main(index: int, db_url: str, tenant_schema: str, raw_schema: str, accounts: int, inbox, outbox):
    try:
        _writer(index, db_url, tenant_schema, raw_schema, accounts, inbox, outbox)
    except BaseException:
        outbox.put(("crashed", index, traceback.format_exc()))
        raise


def _writer(index, db_url, tenant_schema, raw_schema, accounts, inbox, outbox):
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = db_url
    os.environ["LOG_LEVEL"] = "WARNING"
    # As in production (and as pytest runs the parent): no per-query debug logging.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + secrets.token_hex(16))
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    import django

    django.setup()
    import psycopg
    from django.db import connection
    from django_tenants.utils import tenant_context

    from apps.ledger.services import account_ensure, ledger_record
    from apps.tenants.models import Marketplace

    rng = random.Random(index * 7919 + 17)
    raw = psycopg.connect(db_url)
    tenant = Marketplace.objects.get(schema_name=tenant_schema)
    hot_id = accounts  # the raw baseline's hot account; the others are 0..accounts-1
    serial = 0

    def pick(hot: bool) -> tuple[int, int]:
        if hot:
            other = rng.randrange(accounts)
            return (hot_id, other) if rng.random() < 0.5 else (other, hot_id)
        a, b = rng.sample(range(accounts), 2)
        return a, b

    def ledger_one(tag: str, hot: bool) -> None:
        debit, credit = pick(hot)
        ledger_record(
            event_type="Transfer",
            stream="xfer_" + tag,
            payload={
                "debit": HOT if debit == hot_id else account_code(debit),
                "credit": HOT if credit == hot_id else account_code(credit),
                "amount": rng.randint(1, 100_000),
                "currency": CURRENCY,
            },
            idempotency_key=tag,
        )

    def raw_one(tag: str, hot: bool) -> None:
        debit, credit = pick(hot)
        _raw_transfer(raw, raw_schema, tag, debit, credit, rng.randint(1, 100_000))

    with tenant_context(tenant):
        # Warm the account cache, the connections and psycopg's prepared statements.
        for n in range(accounts):
            account_ensure(code=account_code(n), currency=CURRENCY)
        account_ensure(code=HOT, currency=CURRENCY)
        for i in range(10):
            ledger_one(f"warm-{index}-{i}", i % 2 == 0)
            raw_one(f"warm-{index}-{i}", i % 2 == 0)
        outbox.put(("ready", index, None))
        while True:
            cmd = inbox.get()
            if cmd["kind"] == "stop":
                break
            one = ledger_one if cmd["mode"] == "ledger" else raw_one
            hot = cmd["hot"]
            delay = cmd["start"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            latencies: list[float] = []
            errors: dict[str, int] = {}
            deadline = cmd["deadline"]
            now = time.monotonic()
            while now < deadline:
                serial += 1
                try:
                    one(f"{cmd['phase']}-{index}-{serial}", hot)
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    if len(errors) == 1 and sum(errors.values()) == 1:
                        errors["first: " + str(exc)[:200]] = 1
                    end = time.monotonic()
                else:
                    end = time.monotonic()
                    latencies.append(end - now)
                now = end
            outbox.put(("done", index, {"latencies": latencies, "errors": errors, "end": now}))
    raw.close()
    connection.close()
