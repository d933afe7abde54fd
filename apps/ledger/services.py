"""Ledger services: the only way money facts enter the ledger.

``ledger_record`` is the hot path: one database transaction holding one prepared statement
that inserts the event, its journal transaction and entries, then locks the touched balances in
account-id order (so concurrent posters never deadlock) and updates them. Protected accounts are
checked after the update, under the row lock, so no interleaving can overdraw them.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.types.numeric import Int8

from apps.core.db import prepared_cursor
from apps.core.money import CURRENCY_EXPONENTS, MoneyError, convert, normalize_currency, require_amount
from apps.ledger.chart import CHART, FIXED_KINDS, account_kind
from apps.ledger.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidPosting,
    LedgerError,
)
from apps.ledger.models import LedgerEvent, Side
from apps.ledger.rules import Line, rule_for
from apps.tenants.db import current_schema

VERSION_CONFLICT_RETRIES = 5
MAX_AMOUNT = 2**63 - 1  # entries and balances are bigint columns


@dataclass(frozen=True)
class AccountInfo:
    id: int
    code: str
    currency: str
    normal_side: str
    allow_negative: bool


@dataclass
class Recorded:
    """What ``ledger_record`` returns: the event, its lines and whether this call created it."""

    event: LedgerEvent
    lines: list[Line]
    transaction_id: int | None
    created: bool
    accounts: dict[tuple[str, str], AccountInfo] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    stream: str
    payload: dict
    idempotency_key: str
    occurred_at: datetime | None = None


def new_event_id() -> str:
    return "evt_" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


# --------------------------------------------------------------------------- validation


def _canonical_payload(payload: dict) -> str:
    if not isinstance(payload, dict):
        raise InvalidPosting("payload must be a JSON object", param="payload")
    try:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPosting(f"payload must be plain JSON: {exc}", param="payload") from None


# Account codes already found in the chart (``account_kind`` is a pure function of the code).
_chart_codes: set[str] = set()


def validate_lines(lines: Sequence[Line]) -> list[Line]:
    """Check every line and that debits equal credits per currency. Raises InvalidPosting /
    UnknownAccount; returns the lines with normalised currencies."""
    if not lines:
        return []
    if len(lines) < 2:
        raise InvalidPosting("double entry needs at least two lines", param="lines")
    out = []
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        # Replay and verify run this for every event: the common case (a known code, an upper-case
        # listed currency, a plain positive int) skips the general checks, which it would pass.
        code = line.account
        if type(code) is not str or code not in _chart_codes:
            account_kind(code)
            if len(_chart_codes) < 100_000:
                _chart_codes.add(code)
        cur, amt = line.currency, line.amount
        if type(cur) is not str or cur not in CURRENCY_EXPONENTS or type(amt) is not int or amt <= 0:
            try:
                cur = normalize_currency(cur)
                amt = require_amount(amt)
            except MoneyError as exc:
                raise InvalidPosting(
                    str(exc), param="amount" if "amount" in str(exc) else "currency"
                ) from None
        if amt > MAX_AMOUNT:
            raise InvalidPosting(
                f"amount {amt} is larger than the ledger's limit of {MAX_AMOUNT}", param="amount"
            )
        side = line.side
        if side != "D" and side != "C":
            raise InvalidPosting(f"side must be 'D' or 'C', got {side!r}", param="side")
        totals[cur] += amt if side == "D" else -amt
        if type(line) is Line and cur is line.currency and amt is line.amount:
            out.append(line)  # already normalised (Line is immutable)
        else:
            out.append(Line(code, cur, side, amt, line.allow_negative))
    unbalanced = {cur: net for cur, net in totals.items() if net != 0}
    if unbalanced:
        debit_curs = sorted({ln.currency for ln in out if ln.side == Side.DEBIT})
        credit_curs = sorted({ln.currency for ln in out if ln.side == Side.CREDIT})
        if debit_curs != credit_curs:
            raise InvalidPosting(
                f"currency mismatch: debits in {', '.join(debit_curs)}, credits in {', '.join(credit_curs)}; "
                "convert through the fx account",
                param="currency",
            )
        cur, net = sorted(unbalanced.items())[0]
        raise InvalidPosting(
            f"entries do not balance in {cur}: debits exceed credits by {net}", param="amount"
        )
    return out


def lines_for(event_type: str, payload: dict) -> list[Line]:
    return validate_lines(rule_for(event_type)(payload))


# --------------------------------------------------------------------------- accounts

_account_cache: dict[tuple[str, str, str], AccountInfo] = {}


def accounts_ensure(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], AccountInfo]:
    """Account rows for (code, currency) pairs, created (with their balance rows) when missing.
    Rows enter the process cache only after commit, so a rolled-back creation is never cached."""
    schema = current_schema()
    wanted = set(keys)
    found = {k: _account_cache[(schema, *k)] for k in wanted if (schema, *k) in _account_cache}
    missing = wanted - found.keys()
    if not missing:
        return found
    with connection.cursor() as cur:
        for attempt in range(2):
            codes = [k[0] for k in missing]
            curs = [k[1] for k in missing]
            cur.execute(
                "SELECT a.id, a.code, a.currency, a.normal_side, a.allow_negative FROM ledger_account a "
                "JOIN unnest(%s::text[], %s::text[]) AS w(code, currency) "
                "ON a.code = w.code AND a.currency = w.currency",
                [codes, curs],
            )
            for row in cur.fetchall():
                info = AccountInfo(*row)
                found[(info.code, info.currency)] = info
            missing = wanted - found.keys()
            if not missing or attempt == 1:
                break
            specs = [(code, currency, account_kind(code)) for code, currency in sorted(missing)]
            cur.execute(
                "INSERT INTO ledger_account (code, kind, currency, type, normal_side, allow_negative, created_at) "
                "SELECT * , now() FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::boolean[]) ON CONFLICT (code, currency) DO NOTHING",
                [
                    [s[0] for s in specs],
                    [s[2].kind for s in specs],
                    [s[1] for s in specs],
                    [str(s[2].type) for s in specs],
                    [str(s[2].normal_side) for s in specs],
                    [s[2].allow_negative for s in specs],
                ],
            )
            cur.execute(
                "INSERT INTO ledger_balance (account_id, debits, credits, updated_at) "
                "SELECT a.id, 0, 0, now() FROM ledger_account a "
                "JOIN unnest(%s::text[], %s::text[]) AS w(code, currency) "
                "ON a.code = w.code AND a.currency = w.currency ON CONFLICT DO NOTHING",
                [[s[0] for s in specs], [s[1] for s in specs]],
            )
    if missing:
        raise LedgerError(f"could not create accounts {sorted(missing)}")
    snapshot = dict(found)
    transaction.on_commit(lambda: _account_cache.update({(schema, *k): v for k, v in snapshot.items()}))
    return found


def account_ensure(*, code: str, currency: str) -> AccountInfo:
    """The account ``code`` in ``currency``, created from the chart if missing."""
    cur = normalize_currency(currency)
    with transaction.atomic():
        return accounts_ensure([(code, cur)])[(code, cur)]


def ledger_chart_install(*, marketplace) -> None:
    """Create the fixed accounts of the chart in the marketplace's default currency. Idempotent."""
    currency = getattr(marketplace, "default_currency", "USD")
    with transaction.atomic():
        accounts_ensure([(kind, currency) for kind in FIXED_KINDS])


# --------------------------------------------------------------------------- the hot path
#
# Statements on the hot path name their tables with the tenant's schema and run on a cursor that
# binds parameters server-side and prepares them (``apps.core.db.prepared_cursor``): no
# ``SET search_path`` round trip, no re-parsing and re-planning per posting. Parameters are cast
# explicitly so one prepared statement serves every call (ints are sent as int8, whatever their size).

_EVENT_INSERT = """
    INSERT INTO {s}.ledger_event (public_id, type, stream, version, idempotency_key, payload, occurred_at)
    VALUES (%(pid)s::text, %(type)s::text, %(stream)s::text,
            COALESCE(%(version)s::integer,
                     (SELECT COALESCE(max(version), 0) + 1 FROM {s}.ledger_event WHERE stream = %(stream)s::text)),
            %(key)s::text, %(payload)s::jsonb, %(occurred)s::timestamptz)
    ON CONFLICT (idempotency_key) DO NOTHING
"""

# Event, journal transaction, entries and balances in one statement. The balance rows are locked
# in account-id order (``locked``, materialised, so every lock is taken before the first update and
# in that order), only once the entries are written (so the locks are held as briefly as possible)
# and only when the event was inserted (a replayed idempotency key writes no entries, posts nothing).
# Within one statement the UPDATE re-reads a row another transaction changed meanwhile (READ
# COMMITTED re-check), so concurrent postings add up exactly as with separate statements.
# One row per touched balance comes back: (event id, version, recorded_at, txn id, account id,
# debits, credits); no row at all means the idempotency key was taken.
# The arrays are written ARRAY[$1, $2, ...] (one statement per number of lines and of balances)
# so the planner knows their length: a generic plan then costs what a custom one does, and
# PostgreSQL keeps reusing it instead of planning every execution.
_RECORD_WITH_POSTINGS = (
    "WITH ev AS ("
    + _EVENT_INSERT
    + """    RETURNING id, version, recorded_at
), tx AS (
    INSERT INTO {s}.ledger_transaction (event_id) SELECT id FROM ev RETURNING id, event_id
), en AS (
    INSERT INTO {s}.ledger_entry (transaction_id, event_id, account_id, currency, side, amount, recorded_at)
    SELECT tx.id, tx.event_id, v.account_id, v.currency, v.side, v.amount, ev.recorded_at
    FROM tx CROSS JOIN ev
    CROSS JOIN unnest({acc}::bigint[], {cur}::text[], {side}::text[], {amt}::bigint[])
        AS v(account_id, currency, side, amount)
    RETURNING 1
), delta AS (
    SELECT * FROM unnest({bal}::bigint[], {d}::bigint[], {c}::bigint[]) AS d(account_id, d, c)
), locked AS MATERIALIZED (
    SELECT b.account_id FROM {s}.ledger_balance b
    WHERE b.account_id = ANY({bal}::bigint[]) AND (SELECT count(*) FROM en) > 0
    ORDER BY b.account_id FOR UPDATE
), upd AS (
    UPDATE {s}.ledger_balance b
    SET debits = b.debits + delta.d, credits = b.credits + delta.c,
        last_event_id = GREATEST(b.last_event_id, ev.id), updated_at = now()
    FROM locked JOIN delta ON delta.account_id = locked.account_id CROSS JOIN ev
    WHERE b.account_id = locked.account_id AND b.account_id = ANY({bal}::bigint[])
    RETURNING b.account_id, b.debits, b.credits
)
SELECT ev.id, ev.version, ev.recorded_at, tx.id, upd.account_id, upd.debits, upd.credits
FROM ev CROSS JOIN tx LEFT JOIN upd ON true
"""
)

_RECORD_EVENT_ONLY = "INSERT" + _EVENT_INSERT.split("INSERT", 1)[1] + "RETURNING id, version, recorded_at"

_STREAM_VERSION = "SELECT COALESCE(max(version), 0) FROM {s}.ledger_event WHERE stream = %s::text"

_ARRAYS = {
    "acc": "bigint",
    "cur": "text",
    "side": "text",
    "amt": "bigint",
    "bal": "bigint",
    "d": "bigint",
    "c": "bigint",
}

# (statement, schema, lines, balances) -> the statement for that schema and those array lengths
_qualified: dict[tuple[str, str, int, int], str] = {}


def _sql(statement: str, lines: int = 0, balances: int = 0) -> str:
    """``statement`` with the current schema's quoted name for ``{s}`` and, for each array
    placeholder, ``ARRAY[%(name0)s::type, ...]`` of the given length (see ``_array_params``)."""
    schema = current_schema()
    key = (statement, schema, lines, balances)
    try:
        return _qualified[key]
    except KeyError:
        arrays = {
            name: "ARRAY["
            + ", ".join(f"%({name}{i})s::{typ}" for i in range(lines if name in _LINE_ARRAYS else balances))
            + "]"
            for name, typ in _ARRAYS.items()
        }
        text = statement.format(s=connection.ops.quote_name(schema), **arrays)
        _qualified[key] = text
        return text


_LINE_ARRAYS = ("acc", "cur", "side", "amt")


def _array_params(params: dict[str, object], name: str, values: list) -> None:
    for i, value in enumerate(values):
        params[f"{name}{i}"] = value


def _is_version_conflict(exc: IntegrityError) -> bool:
    # Schemas cloned from the template carry the constraint as "ledger_event_stream_version_key"
    # (django-tenants' clone renames unique constraints), so match both names.
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) in (
        "ledger_event_stream_version",
        "ledger_event_stream_version_key",
    )


def ledger_record(
    *,
    event_type: str,
    stream: str,
    payload: dict,
    idempotency_key: str,
    expected_version: int | None = None,
    occurred_at: datetime | None = None,
    savepoint: bool = True,
) -> Recorded:
    """Record an event and post its entries, atomically.

    Idempotent: the same ``idempotency_key`` returns the first event and posts nothing new
    (a different event under the same key raises IdempotencyConflict). With ``expected_version``
    the stream must be at that version (else ConcurrencyError); without it the next version is
    taken, retrying on a concurrent writer. Raises UnknownEventType, InvalidPosting,
    UnknownAccount, InsufficientFunds; nothing is written when it raises. Locks the touched
    balance rows in account-id order until the surrounding transaction commits.

    ``savepoint=False`` (inside a transaction the caller lets roll back whole if this raises, e.g.
    a stream only written under a row lock): no SAVEPOINT / RELEASE round trips, so the balance
    rows are held one round trip less; if it raises, the surrounding transaction can only roll
    back, and a concurrent writer on the stream raises ConcurrencyError instead of a retry."""
    if not isinstance(stream, str) or not stream or len(stream) > 200:
        raise InvalidPosting("stream must be a non-empty string of at most 200 characters", param="stream")
    if not isinstance(idempotency_key, str) or not idempotency_key or len(idempotency_key) > 255:
        raise InvalidPosting("idempotency_key must be 1-255 characters", param="idempotency_key")
    if expected_version is not None and (not isinstance(expected_version, int) or expected_version < 0):
        raise InvalidPosting("expected_version must be a non-negative integer", param="expected_version")
    payload_json = _canonical_payload(payload)
    lines = lines_for(event_type, payload)
    for attempt in range(VERSION_CONFLICT_RETRIES):
        try:
            with transaction.atomic(savepoint=savepoint):
                return _record_once(
                    event_type,
                    stream,
                    payload,
                    payload_json,
                    idempotency_key,
                    expected_version,
                    occurred_at or timezone.now(),
                    lines,
                )
        except IntegrityError as exc:
            if not _is_version_conflict(exc):
                raise
            if expected_version is not None:
                raise ConcurrencyError(
                    f"stream {stream!r} is past version {expected_version}; reload and retry",
                    param="expected_version",
                ) from None
            if attempt == VERSION_CONFLICT_RETRIES - 1 or not savepoint:
                raise ConcurrencyError(f"stream {stream!r} kept moving; try again") from None
    raise AssertionError("unreachable")


def _record_once(event_type, stream, payload, payload_json, key, expected_version, occurred_at, lines):
    accounts = accounts_ensure({(ln.account, ln.currency) for ln in lines}) if lines else {}
    public_id = new_event_id()
    params: dict[str, object] = {
        "pid": public_id,
        "type": event_type,
        "stream": stream,
        "version": None if expected_version is None else Int8(expected_version + 1),
        "key": key,
        "payload": payload_json,
        "occurred": occurred_at,
    }
    with prepared_cursor() as cur:
        if expected_version is not None:
            # A version ahead of the stream would insert past a gap; behind is caught by the unique index.
            cur.execute(_sql(_STREAM_VERSION), [stream])
            current = cur.fetchone()[0]
            if current < expected_version:
                raise ConcurrencyError(
                    f"stream {stream!r} is at version {current}, not {expected_version}; reload and retry",
                    param="expected_version",
                )
        if lines:
            deltas = _balance_deltas(lines, accounts)
            ids = sorted(deltas.total)
            _array_params(params, "acc", [Int8(accounts[(ln.account, ln.currency)].id) for ln in lines])
            _array_params(params, "cur", [ln.currency for ln in lines])
            _array_params(params, "side", [ln.side for ln in lines])
            _array_params(params, "amt", [Int8(ln.amount) for ln in lines])
            _array_params(params, "bal", [Int8(i) for i in ids])
            _array_params(params, "d", [Int8(deltas.total[i][0]) for i in ids])
            _array_params(params, "c", [Int8(deltas.total[i][1]) for i in ids])
            cur.execute(_sql(_RECORD_WITH_POSTINGS, len(lines), len(ids)), params)
            rows = cur.fetchall()
            if not rows:
                return _existing(key, event_type, stream, payload, lines)
            event_id, version, recorded_at, txn_id = rows[0][:4]
            if len(rows) != len(ids) or any(r[4] is None for r in rows):  # pragma: no cover - defensive
                raise LedgerError(f"balance rows missing for accounts {ids}")
            _check_overdrafts([r[4:] for r in rows], deltas, accounts)
        else:
            cur.execute(_sql(_RECORD_EVENT_ONLY), params)
            row = cur.fetchone()
            if row is None:
                return _existing(key, event_type, stream, payload, lines)
            event_id, version, recorded_at = row
            txn_id = None
    event = LedgerEvent(
        id=event_id,
        public_id=public_id,
        type=event_type,
        stream=stream,
        version=version,
        idempotency_key=key,
        payload=payload,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
    )
    event._state.adding = False
    return Recorded(event, lines, txn_id, True, accounts)


def _existing(key, event_type, stream, payload, lines) -> Recorded:
    event = LedgerEvent.objects.filter(idempotency_key=key).select_related("journal").first()
    if event is None:  # pragma: no cover - the conflicting insert was rolled back meanwhile
        raise ConcurrencyError("a concurrent write with this idempotency key was rolled back; retry")
    if event.type != event_type or event.stream != stream or event.payload != json.loads(json.dumps(payload)):
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for event {event.public_id} with different content",
            param="idempotency_key",
        )
    journal = getattr(event, "journal", None)
    return Recorded(event, lines, journal.pk if journal else None, False)


@dataclass
class _Deltas:
    total: dict[int, list[int]]  # account id -> [debits, credits] to add
    # The part of each delta held to the protected-account rule: unwinds (allow_negative lines) may
    # overdraw, but must not excuse the event's other lines on the same account.
    guarded: dict[int, list[int]]


def _balance_deltas(lines: list[Line], accounts) -> _Deltas:
    out = _Deltas({}, {})
    for ln in lines:
        info = accounts[(ln.account, ln.currency)]
        d = out.total.setdefault(info.id, [0, 0])
        d[0 if ln.side == Side.DEBIT else 1] += ln.amount
        if not ln.allow_negative:
            out.guarded.setdefault(info.id, [0, 0])[0 if ln.side == Side.DEBIT else 1] += ln.amount
    return out


def _check_overdrafts(rows, deltas: _Deltas, accounts) -> None:
    """Refuse any overdraft of a protected account, given the updated (account id, debits,
    credits) rows (raising InsufficientFunds rolls the whole posting back)."""
    by_id = {info.id: info for info in accounts.values()}
    for account_id, debits, credits in rows:
        info = by_id[account_id]
        if info.allow_negative or account_id not in deltas.guarded:
            continue
        balance = debits - credits if info.normal_side == Side.DEBIT else credits - debits
        dr, cr = deltas.guarded[account_id]
        decreasing = (cr > dr) if info.normal_side == Side.DEBIT else (dr > cr)
        if balance < 0 and decreasing:
            raise InsufficientFunds(
                f"insufficient funds in {info.code} ({info.currency}): balance would be {balance}",
                param="amount",
            )


# --------------------------------------------------------------------------- operations


def ledger_post_manual(
    *,
    debit: str,
    credit: str,
    amount: int,
    currency: str,
    reason: str,
    actor: str = "",
    idempotency_key: str | None = None,
) -> Recorded:
    """An operator's manual adjustment (its own event, with the reason). Idempotent by key."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidPosting("a manual adjustment needs a reason", param="reason")
    key = idempotency_key or "adj:" + secrets.token_hex(12)
    stream = "adj_" + key.replace(":", "_")[:190]
    payload = {
        "debit": debit,
        "credit": credit,
        "amount": amount,
        "currency": currency,
        "reason": reason.strip(),
        "actor": actor,
    }
    if isinstance(currency, str):
        payload["currency"] = currency.upper()
    return ledger_record(event_type="ManualAdjustment", stream=stream, payload=payload, idempotency_key=key)


def ledger_reverse(*, event: LedgerEvent, reason: str, idempotency_key: str | None = None) -> Recorded:
    """Record the mirror image of ``event``'s entries. Idempotent: an event is reversed once
    (unless the caller gives its own key). Raises InvalidPosting if the event posted nothing."""
    entries = list(event.entries.select_related("account").order_by("id"))
    if not entries:
        raise InvalidPosting(f"event {event.public_id} posted nothing; there is nothing to reverse")
    lines = [
        {
            "account": e.account.code,
            "currency": e.currency,
            "side": "C" if e.side == "D" else "D",
            "amount": e.amount,
        }
        for e in entries
    ]
    return ledger_record(
        event_type="Reversal",
        stream=event.stream,
        payload={"reverses": event.public_id, "reason": reason, "lines": lines},
        idempotency_key=idempotency_key or f"reverse:{event.public_id}",
    )


def ledger_fx_convert(
    *,
    from_account: str,
    from_currency: str,
    from_amount: int,
    to_account: str,
    to_currency: str,
    rate: Decimal | str,
    idempotency_key: str,
    stream: str | None = None,
) -> Recorded:
    """Convert between currencies through the fx account at ``rate`` (recorded on the event)."""
    try:
        to_amount = convert(
            require_amount(from_amount), from_currency=from_currency, to_currency=to_currency, rate=rate
        )
    except MoneyError as exc:
        raise InvalidPosting(str(exc)) from None
    except ArithmeticError:  # decimal.InvalidOperation: not a number, NaN, infinite or out of range
        raise InvalidPosting(f"rate must be a positive decimal number, got {rate!r}", param="rate") from None
    payload = {
        "from_account": from_account,
        "from_currency": normalize_currency(from_currency),
        "from_amount": from_amount,
        "to_account": to_account,
        "to_currency": normalize_currency(to_currency),
        "to_amount": to_amount,
        "rate": str(rate),
    }
    return ledger_record(
        event_type="FxConversion",
        stream=stream or f"fx_{idempotency_key}"[:200],
        payload=payload,
        idempotency_key=idempotency_key,
    )


__all__ = [
    "CHART",
    "AccountInfo",
    "EventSpec",
    "Recorded",
    "account_ensure",
    "accounts_ensure",
    "ledger_chart_install",
    "ledger_fx_convert",
    "ledger_post_manual",
    "ledger_record",
    "ledger_reverse",
    "validate_lines",
]
