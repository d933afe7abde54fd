"""Tamper evidence and replay.

Hash chain: each event's hash covers its fields and its entries (computed by PostgreSQL from
the stored rows); ``chain_hash = sha256(previous chain_hash + event_hash)``. Sealing runs off the
posting path (beat, or ``ledger seal``): it takes the events whose writing transactions have all
finished (``txid`` below the snapshot's xmin, so no in-flight transaction can still add an
earlier one), orders them by (txid, id), chains them and closes a block whose hash covers the
previous block, the block's Merkle root (apps.ledger.merkle: the tree format is versioned per seal)
and its last chain hash. Posting takes no global lock.

Verification recomputes all of it from the rows and names the first bad event. Replay rebuilds
balances from the events alone (through the posting rules).
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import psycopg
from django.db import connection, transaction

from apps.ledger.errors import LedgerError
from apps.ledger.merkle import (
    MERKLE_VERSION,
    MERKLE_VERSIONS,
    block_hash,
    merkle_path_check,
    merkle_proof,
    merkle_root,
)
from apps.ledger.models import Seal
from apps.ledger.rules import Line
from apps.ledger.services import accounts_ensure, lines_for
from apps.tenants.db import current_schema

GENESIS = "0" * 64
SEAL_MAX_EVENTS = 50_000


# The event's canonical content, hashed inside PostgreSQL so seal and verify agree by construction.
# ``entries`` is the event's entries as text (see ENTRIES_TEXT_SQL), or NULL when it has none.
def event_hash_sql(entries: str, payload_text: str = "e.payload::text") -> str:
    return f"""
encode(sha256(convert_to(
    e.public_id || '|' || e.type || '|' || e.stream || '|' || e.version || '|' || e.idempotency_key || '|'
    || {payload_text} || '|' || (extract(epoch FROM e.occurred_at) * 1000000)::bigint || '|'
    || coalesce({entries}, ''),
    'UTF8')), 'hex')
"""


# An event's entries in id order, "account_id:currency:side:amount" joined by "," (aggregate over ``en``).
ENTRIES_TEXT_SQL = "string_agg(en.account_id || ':' || en.currency || ':' || en.side || ':' || en.amount, ',' ORDER BY en.id)"

EVENT_HASH_SQL = event_hash_sql(f"(SELECT {ENTRIES_TEXT_SQL} FROM ledger_entry en WHERE en.event_id = e.id)")

Progress = Callable[[int], None]


def _h(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


# --------------------------------------------------------------------------- sealing


@dataclass
class SealResult:
    blocks: int = 0
    events: int = 0
    digest: dict | None = None


def _advisory_key() -> int:
    return int.from_bytes(
        hashlib.sha256(f"ledger-seal:{current_schema()}".encode()).digest()[:8], "big", signed=True
    )


def ledger_seal(*, max_events: int = SEAL_MAX_EVENTS, progress: Progress | None = None) -> SealResult:
    """Seal every event whose writers have finished, in blocks of at most ``max_events``.
    Idempotent and safe to run concurrently (a per-tenant advisory lock serialises sealers)."""
    result = SealResult()
    while True:
        sealed = _seal_one_block(max_events)
        if not sealed:
            break
        result.blocks += 1
        result.events += sealed
        if progress:
            progress(sealed)
    result.digest = ledger_digest()
    return result


def _seal_one_block(max_events: int) -> int:
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_advisory_key()])
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        horizon = cur.fetchone()[0]
        cur.execute(
            "SELECT number, horizon_txid, hash, last_seq, last_chain_hash FROM ledger_seal "
            "ORDER BY number DESC LIMIT 1"
        )
        last = cur.fetchone()
        number, prev_horizon, prev_hash, last_seq, chain = (
            (last[0] + 1, last[1], last[2], last[3], last[4]) if last else (1, 0, GENESIS, 0, GENESIS)
        )
        cur.execute("SET LOCAL jit = off")  # compiling the per-row hashing costs more than it saves
        cur.execute(
            "SELECT e.id, e.txid FROM ledger_event e "
            "WHERE e.txid >= %s AND e.txid < %s ORDER BY e.txid, e.id LIMIT %s",
            [prev_horizon, horizon, max_events + 1],
        )
        rows = cur.fetchall()
        if not rows:
            return 0
        block_from, block_horizon = prev_horizon, horizon
        if len(rows) > max_events:
            # Cut at a transaction boundary so "every event below the horizon is sealed" holds.
            cut_txid = rows[max_events][1]
            kept = [r for r in rows if r[1] < cut_txid]
            if kept:
                rows, block_horizon = kept, cut_txid
            else:  # one transaction larger than a block: seal all of it
                cur.execute(
                    "SELECT e.id, e.txid FROM ledger_event e WHERE e.txid = %s ORDER BY e.id", [cut_txid]
                )
                rows, block_from, block_horizon = cur.fetchall(), cut_txid, cut_txid + 1
        # The block is every event with block_from <= txid < block_horizon; hash them all.
        hashes = _event_hashes(cur, block_from, block_horizon, [r[0] for r in rows])
        rows = [(event_id, txid, hashes[event_id]) for event_id, txid in rows]
        seqs = list(range(last_seq + 1, last_seq + 1 + len(rows)))
        event_ids = [r[0] for r in rows]
        event_hashes = [r[2] for r in rows]
        chain_hashes = []
        sha256 = hashlib.sha256
        for event_hash in event_hashes:
            chain = sha256(f"{chain}|{event_hash}".encode()).hexdigest()  # _h(chain, event_hash)
            chain_hashes.append(chain)
        # COPY: the rows are written by psycopg's C code, not quoted into arrays one by one.
        with cur.copy(
            "COPY ledger_chain_link (seq, event_id, block, event_hash, chain_hash) FROM STDIN"
        ) as copy:
            for row in zip(seqs, event_ids, repeat(number), event_hashes, chain_hashes, strict=False):
                copy.write_row(row)
        root = merkle_root(event_hashes, version=MERKLE_VERSION)
        cur.execute(
            "INSERT INTO ledger_seal (number, first_seq, last_seq, event_count, horizon_txid, prev_hash, merkle_root, "
            "merkle_version, last_chain_hash, hash, sealed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            [
                number,
                seqs[0],
                seqs[-1],
                len(seqs),
                block_horizon,
                prev_hash,
                root,
                MERKLE_VERSION,
                chain,
                block_hash(
                    number=number,
                    prev_hash=prev_hash,
                    merkle=root,
                    last_chain_hash=chain,
                    count=len(seqs),
                    merkle_version=MERKLE_VERSION,
                ),
            ],
        )
        return len(rows)


def _event_hashes(cur, txid_from: int, txid_to: int, ids: list[int]) -> dict[int, str]:
    """{event id: hash} of the events with txid_from <= txid < txid_to (whose ids are ``ids``).
    When their ids are dense (the usual case), the entries are grouped in one pass over that id
    range of the entries' event index, which costs half as much as a subquery per event."""
    lo, hi = min(ids), max(ids)
    if hi - lo < 2 * len(ids):
        cur.execute(
            f"SELECT e.id, {event_hash_sql('en.entries')} FROM ledger_event e "
            f"LEFT JOIN (SELECT en.event_id, {ENTRIES_TEXT_SQL} AS entries FROM ledger_entry en "
            "  WHERE en.event_id >= %(lo)s AND en.event_id <= %(hi)s GROUP BY en.event_id) en ON en.event_id = e.id "
            "WHERE e.id >= %(lo)s AND e.id <= %(hi)s AND e.txid >= %(from)s AND e.txid < %(to)s",
            {"lo": lo, "hi": hi, "from": txid_from, "to": txid_to},
        )
    else:
        cur.execute(
            f"SELECT e.id, {EVENT_HASH_SQL} FROM ledger_event e WHERE e.txid >= %s AND e.txid < %s",
            [txid_from, txid_to],
        )
    return dict(cur.fetchall())


def ledger_digest() -> dict | None:
    """The latest sealed block as a publishable digest (None before the first seal)."""
    seal = Seal.objects.order_by("-number").first()
    if seal is None:
        return None
    return {
        "tenant": current_schema(),
        "block": seal.number,
        "hash": seal.hash,
        "last_seq": seal.last_seq,
        "events": seal.last_seq,
        "merkle_root": seal.merkle_root,
        "merkle_version": seal.merkle_version,
        "sealed_at": seal.sealed_at.isoformat(),
    }


def ledger_prove(*, public_id: str) -> dict:
    """Inclusion proof of one sealed event: its hash, its leaf index and Merkle path in its block
    (in that block's tree format, ``merkle_version``), and the chain of block hashes from that block
    to the latest digest. Raises LookupError for an unknown or not yet sealed event."""
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM ledger_event WHERE public_id = %s", [public_id])
        event = cur.fetchone()
        if event is None:
            raise LookupError(f"no ledger event {public_id}")
        cur.execute("SELECT seq, block, event_hash FROM ledger_chain_link WHERE event_id = %s", [event[0]])
        row = cur.fetchone()
        if row is None:
            raise LookupError(
                f"event {public_id} is not sealed yet; run `ledger seal` (or wait for the next seal)"
            )
        seq, block, event_hash = row
        cur.execute("SELECT event_hash FROM ledger_chain_link WHERE block = %s ORDER BY seq", [block])
        leaves = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT number, first_seq, prev_hash, merkle_root, merkle_version, last_chain_hash, event_count, hash "
            "FROM ledger_seal WHERE number >= %s ORDER BY number",
            [block],
        )
        seals = cur.fetchall()
    blocks = [
        {
            "number": n,
            "prev_hash": p,
            "merkle_root": m,
            "merkle_version": v,
            "last_chain_hash": lc,
            "count": c,
            "hash": h,
        }
        for n, _first, p, m, v, lc, c, h in seals
    ]
    index = seq - seals[0][1]
    if not (0 <= index < len(leaves) and leaves[index] == event_hash):
        raise LookupError(f"event {public_id}: its chain link does not match its block; run `ledger verify`")
    version = blocks[0]["merkle_version"]
    return {
        "event": public_id,
        "seq": seq,
        "event_hash": event_hash,
        "merkle_version": version,
        "leaf_index": index,
        "merkle_path": merkle_proof(leaves, index, version=version),
        "blocks": blocks,
    }


def proof_check(proof: dict, digest: dict) -> bool:
    """Check an inclusion proof against a published digest, with nothing but hashing. The tree
    format and size come from the first block (its hash covers both); never raises."""
    try:
        blocks = proof["blocks"]
        first = blocks[0]
        version = first.get("merkle_version", 1)
        if not merkle_path_check(
            event_hash=proof["event_hash"],
            index=proof["leaf_index"],
            size=first["count"],
            path=proof["merkle_path"],
            root=first["merkle_root"],
            version=version,
        ):
            return False
        prev = None
        for b in blocks:
            if prev is not None and b["prev_hash"] != prev:
                return False
            expected = block_hash(
                number=b["number"],
                prev_hash=b["prev_hash"],
                merkle=b["merkle_root"],
                last_chain_hash=b["last_chain_hash"],
                count=b["count"],
                merkle_version=b.get("merkle_version", 1),
            )
            if expected != b["hash"]:
                return False
            prev = b["hash"]
        return prev == digest["hash"] and blocks[-1]["number"] == digest["block"]
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


# --------------------------------------------------------------------------- replay


@dataclass
class Replayed:
    events: int = 0
    balances: dict[tuple[str, str], list[int]] = field(
        default_factory=dict
    )  # (code, cur) -> [debits, credits]


def replay_balances(*, progress: Progress | None = None, chunk: int = 20_000) -> Replayed:
    """Derive every account's debits and credits from the events alone (via the posting rules).
    Reads in the caller's snapshot; writes nothing."""
    out = Replayed()
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    last_id = 0
    with connection.cursor() as cur:
        while True:
            cur.execute(
                "SELECT id, type, payload::text FROM ledger_event WHERE id > %s ORDER BY id LIMIT %s",
                [last_id, chunk],
            )
            rows = cur.fetchall()
            if not rows:
                break
            for _id, event_type, payload_text in rows:
                for ln in lines_for(event_type, json.loads(payload_text)):
                    t = totals[(ln.account, ln.currency)]
                    t[0 if ln.side == "D" else 1] += ln.amount
            last_id = rows[-1][0]
            out.events += len(rows)
            if progress:
                progress(len(rows))
    out.balances = dict(totals)
    return out


def ledger_replay(*, progress: Progress | None = None) -> Replayed:
    """Rebuild the balance projection from events. Blocks posting while it runs (it holds an
    exclusive lock on the balances), so the result is exact. Idempotent."""
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("LOCK TABLE ledger_balance IN EXCLUSIVE MODE")
        replayed = replay_balances(progress=progress)
        accounts = accounts_ensure(replayed.balances.keys()) if replayed.balances else {}
        ids = [accounts[k].id for k in replayed.balances]
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE ledger_balance SET debits = 0, credits = 0, updated_at = now() "
                "WHERE NOT (account_id = ANY(%s))",
                [ids],
            )
            cur.execute(
                "UPDATE ledger_balance b SET debits = v.d, credits = v.c, updated_at = now() "
                "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, d, c) WHERE b.account_id = v.id",
                [ids, [v[0] for v in replayed.balances.values()], [v[1] for v in replayed.balances.values()]],
            )
    return replayed


# --------------------------------------------------------------------------- verification


@dataclass
class VerifyReport:
    events: int = 0
    sealed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(message)


def ledger_verify(*, progress: Progress | None = None, digest: dict | None = None) -> VerifyReport:
    """Recompute everything: the hash chain and seals, that nothing was inserted into sealed
    history, double entry per transaction and currency, postings against the rules, and the
    balance projection against a replay. Read-only; runs in one REPEATABLE READ snapshot.

    Two passes, each on its own connection in the same snapshot (exported to them) and driven by
    a thread (the GIL is released while one waits for PostgreSQL): the links pass checks the chain
    link by link, the seals and double entry; the events pass has PostgreSQL hash every event
    against its link and fetch its entries, a chunk ahead of this thread, which puts every event
    through its posting rule and looks for events missing from sealed history. Problems are
    reported in the order above. Without a second connection all of it runs on this one."""
    report = VerifyReport()
    nested = connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(_VERIFY_SETTINGS)
        helpers = [] if nested else _Helper.start(2)
        history, postings = VerifyReport(), VerifyReport()
        found: list[_Finding | None] = [None]
        try:
            if helpers:
                helpers[0].run(lambda cur: found.__setitem__(0, _verify_sealed_history(history, digest, cur)))
            else:
                with connection.cursor() as cur:
                    found[0] = _verify_sealed_history(history, digest, cur)
            chunks = helpers[1].prefetch(_event_chunks) if len(helpers) > 1 else None
            changed, inserted = _verify_postings_and_balances(postings, chunks, progress)
            for helper in helpers:
                helper.join()
        finally:
            for helper in helpers:
                helper.close()
        # The first link with a problem, in chain order; at one link a gap comes first, then a
        # missing or changed event, then a broken chain.
        first = min((f for f in (found[0], changed) if f is not None), key=_Finding.key, default=None)
        report.events, report.sealed = postings.events, history.sealed
        # The inserted event (found by the events pass) is reported with the chain, as before.
        report.problems = (
            ([first.message] if first else [])
            + (
                [f"event {inserted} was inserted into sealed history (it is not in the chain)"]
                if inserted
                else []
            )
            + history.problems
            + postings.problems
        )
    return report


# For verify's transactions: compiling its per-row expressions costs more than it saves, and
# parallel workers would only compete with verify's own connections for the cores.
_VERIFY_SETTINGS = "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0"


class _Helper:
    """Another connection in the caller's snapshot, with a thread to drive it."""

    def __init__(self, conn):
        self.conn = conn
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    @classmethod
    def start(cls, count: int) -> list[_Helper]:
        """Up to ``count`` helpers (fewer, or none, when connections are refused: the work then
        stays on the caller's connection)."""
        if getattr(connection, "pool", None) is not None:
            return []  # a pooled connection would have to go back to the pool
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
        except Exception:  # e.g. on a standby
            return []
        helpers: list[_Helper] = []
        for _ in range(count):
            try:
                conn = connection.get_new_connection(connection.get_connection_params())
            except Exception:  # connection limit
                break
            try:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                setup = psycopg.ClientCursor(conn)
                setup.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
                setup.execute(
                    "SELECT set_config('search_path', %s, true)",
                    [connection.ops.quote_name(current_schema())],
                )
                setup.execute(_VERIFY_SETTINGS)
            except Exception:
                conn.close()
                break
            helpers.append(cls(conn))
        return helpers

    def run(self, work: Callable) -> None:
        def target():
            try:
                with psycopg.ClientCursor(self.conn) as cur:
                    work(cur)
            except BaseException as exc:  # re-raised by join()
                self.error = exc

        self.thread = threading.Thread(target=target, name="ledger-verify", daemon=True)
        self.thread.start()

    def prefetch(self, produce: Callable) -> Iterator:
        """Run ``produce(cursor)`` (a generator) here, a couple of items ahead of the consumer."""
        items: queue.Queue = queue.Queue(maxsize=2)
        end = object()

        def put(item) -> None:
            """Hand ``item`` to the consumer, waiting for room unless told to stop."""
            while not self.stop.is_set():
                try:
                    items.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def work(cur):
            try:
                for item in produce(cur):
                    put(item)
                    if self.stop.is_set():
                        return
            finally:
                put(end)

        self.run(work)

        def consume():
            while (item := items.get()) is not end:
                yield item
            self.join()  # the producer's error, if it stopped on one

        return consume()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None and self.thread.is_alive():
            self.conn.cancel()
            self.thread.join()
        self.conn.close()


def _verify_sealed_history(report: VerifyReport, digest: dict | None, cur) -> _Finding | None:
    """The chain's links in order (without the events' hashes: the events pass checks those),
    seals and double entry. The chain's first problem is returned rather than
    reported: the events pass may find a changed event at an earlier link."""
    finding = _verify_links(report, cur)
    _verify_seals(report, digest, cur)
    _verify_double_entry(report, cur)
    return finding


VERIFY_CHUNK = 100_000

# One chunk of chain links (seq in (after, last]), each checked on its own: it is where it should
# be, its event exists, and chain_hash = H(previous link's stored chain_hash, event_hash). If every
# link passes that, recomputing the chain from GENESIS gives the stored hashes link by link (by
# induction), so the first link that fails it is where a sequential recomputation diverges. The
# first link with a problem comes back, or else the chunk's last link (to carry on from).
_VERIFY_LINKS = """
WITH l AS (
    SELECT l.seq, l.event_id, l.event_hash, l.chain_hash,
           NOT EXISTS (SELECT FROM ledger_event e WHERE e.id = l.event_id) AS missing,
           %(after)s + row_number() OVER (ORDER BY l.seq) AS pos,
           lag(l.chain_hash, 1, %(prev)s::varchar) OVER (ORDER BY l.seq) AS prev_chain
    FROM ledger_chain_link l
    WHERE l.seq > %(after)s AND l.seq <= %(last)s
), c AS (
    SELECT *, chain_hash IS DISTINCT FROM
              encode(sha256(convert_to(prev_chain || '|' || event_hash, 'UTF8')), 'hex') AS broken
    FROM l
)
SELECT seq, event_id, chain_hash, pos, missing, broken FROM c
WHERE seq <> pos OR missing OR broken OR seq = %(last)s
ORDER BY seq
LIMIT 1
"""

# At one link, which problem is named: a gap, then a missing or changed event, then the chain.
_PRECEDENCE = {"gap": 0, "missing": 1, "changed": 1, "chain": 2}


@dataclass
class _Finding:
    seq: int
    kind: str
    message: str

    def key(self) -> tuple[int, int]:
        return (self.seq, _PRECEDENCE[self.kind])


def _changed_finding(seq: int, public_id: str) -> _Finding:
    return _Finding(
        seq,
        "changed",
        f"event {public_id} (chain link {seq}) was changed after sealing: its content no longer matches "
        "its sealed hash",
    )


def _verify_links(report: VerifyReport, cur) -> _Finding | None:
    cur.execute("SELECT count(*) FROM ledger_chain_link")
    total = cur.fetchone()[0]
    report.sealed = total
    after, prev, done = 0, GENESIS, 0
    finding = None
    while done < total and finding is None:
        cur.execute(
            "SELECT max(seq), count(*) FROM (SELECT seq FROM ledger_chain_link WHERE seq > %s ORDER BY seq LIMIT %s) s",
            [after, VERIFY_CHUNK],
        )
        last, count = cur.fetchone()
        if not count:
            break
        cur.execute(_VERIFY_LINKS, {"after": after, "last": last, "prev": prev})
        seq, event_id, stored_chain, pos, missing, broken = cur.fetchone()
        if seq != pos:
            finding = _Finding(
                seq, "gap", f"chain gap: expected link {pos}, found {seq} (a link was removed)"
            )
        elif missing:
            finding = _Finding(
                seq, "missing", f"event id {event_id} (chain link {seq}) is missing: it was deleted"
            )
        elif broken:
            cur.execute("SELECT public_id FROM ledger_event WHERE id = %s", [event_id])
            name = cur.fetchone()[0]
            finding = _Finding(
                seq, "chain", f"chain broken at link {seq} ({name}): links were reordered or rewritten"
            )
        done += count
        after, prev = last, stored_chain
    return finding


def _verify_seals(report: VerifyReport, digest: dict | None, cur) -> None:
    prev = GENESIS
    cur.execute(
        "SELECT number, first_seq, last_seq, event_count, prev_hash, merkle_root, last_chain_hash, hash, "
        "merkle_version FROM ledger_seal ORDER BY number"
    )
    seals = cur.fetchall()
    for number, _first, _last, count, prev_hash, root, last_chain, stored, version in seals:
        cur.execute(
            "SELECT event_hash, chain_hash FROM ledger_chain_link WHERE block = %s ORDER BY seq", [number]
        )
        links = cur.fetchall()
        problem = None
        if prev_hash != prev:
            problem = f"block {number} does not follow block {number - 1}"
        elif len(links) != count or (links and links[-1][1] != last_chain):
            problem = f"block {number}: its links no longer match the seal"
        elif version not in MERKLE_VERSIONS:
            problem = f"block {number}: unknown Merkle tree version {version}"
        elif merkle_root([x[0] for x in links], version=version) != root:
            problem = f"block {number}: Merkle root mismatch"
        elif (
            block_hash(
                number=number,
                prev_hash=prev_hash,
                merkle=root,
                last_chain_hash=last_chain,
                count=count,
                merkle_version=version,
            )
            != stored
        ):
            problem = f"block {number}: block hash mismatch"
        if problem:
            report.fail(problem)
            return
        prev = stored
    if digest is not None:
        match = [s for s in seals if s[0] == digest.get("block")]
        if not match or match[0][7] != digest.get("hash"):
            report.fail(f"published digest for block {digest.get('block')} does not match the ledger")


def _verify_double_entry(report: VerifyReport, cur) -> None:
    # Group the entries alone (one pass, in transaction_id order), then name the first unbalanced
    # journal transaction; joining every entry to its transaction and event first costs 4x.
    cur.execute(
        "SELECT t.id, ev.public_id, x.currency FROM ("
        "  SELECT en.transaction_id, en.currency FROM ledger_entry en GROUP BY en.transaction_id, en.currency "
        "  HAVING sum(CASE WHEN en.side = 'D' THEN en.amount ELSE -en.amount END) <> 0) x "
        "JOIN ledger_transaction t ON t.id = x.transaction_id JOIN ledger_event ev ON ev.id = t.event_id "
        "ORDER BY t.id LIMIT 1"
    )
    bad = cur.fetchone()
    if bad:
        report.fail(f"journal transaction {bad[0]} of event {bad[1]} does not balance in {bad[2]}")
    cur.execute(
        "SELECT currency, sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) FROM ledger_entry "
        "GROUP BY currency HAVING sum(CASE WHEN side = 'D' THEN amount ELSE -amount END) <> 0"
    )
    for currency, net in cur.fetchall():
        report.fail(f"all entries in {currency} do not net to zero (off by {net})")


EVENTS_CHUNK = 50_000

# One chunk of events (id in (after, last]) with their entries, grouped in one pass over the
# chunk's range of the entries' event index (a subquery per event costs twice as much), and for
# a sealed event whether its content still hashes to what its chain link holds.
_VERIFY_EVENTS = f"""
SELECT e.id, e.public_id, e.type, e.payload_text, e.entries, e.seq,
       e.seq IS NOT NULL AND e.link_hash IS DISTINCT FROM {event_hash_sql("e.entries", "e.payload_text")} AS changed,
       e.seq IS NULL AND e.txid < %(horizon)s AS inserted
FROM (
    SELECT e.id, e.public_id, e.type, e.stream, e.version, e.idempotency_key, e.occurred_at, e.txid,
           e.payload::text AS payload_text, en.entries, l.seq, l.event_hash AS link_hash
    FROM ledger_event e
    LEFT JOIN (
        SELECT en.event_id, {ENTRIES_TEXT_SQL} AS entries FROM ledger_entry en
        WHERE en.event_id > %(after)s AND en.event_id <= %(last)s GROUP BY en.event_id
    ) en ON en.event_id = e.id
    LEFT JOIN LATERAL (  -- LIMIT 1 (event_id is unique) keeps this a lookup, not a hash of every link
        SELECT l.seq, l.event_hash FROM ledger_chain_link l WHERE l.event_id = e.id LIMIT 1
    ) l ON true
    WHERE e.id > %(after)s AND e.id <= %(last)s
    ORDER BY e.id
    OFFSET 0  -- keeps payload::text computed once, for the row and for the hash
) e
ORDER BY e.id
"""


def _event_chunks(cur) -> Iterator[list[tuple]]:
    """Every event as (id, public_id, type, payload text, entries text, chain seq, changed,
    inserted), in id order, a chunk at a time. ``inserted``: not in the chain although written
    below the last seal's horizon (every event there must be sealed)."""
    cur.execute("SELECT coalesce(max(horizon_txid), 0) FROM ledger_seal")
    horizon = cur.fetchone()[0]
    after = 0
    while True:
        cur.execute(
            "SELECT max(id) FROM (SELECT id FROM ledger_event WHERE id > %s ORDER BY id LIMIT %s) s",
            [after, EVENTS_CHUNK],
        )
        last = cur.fetchone()[0]
        if last is None:
            return
        cur.execute(_VERIFY_EVENTS, {"after": after, "last": last, "horizon": horizon})
        yield cur.fetchall()
        after = last


def _stored_lines(stored: str | None, codes: dict[str, str]) -> list[tuple] | None:
    """(code, currency, side, amount) of each stored entry, sorted; None if it does not parse.
    Legitimate sides and currencies hold no ":" or ",", so only a tampered entry fails to parse
    (and then it cannot match its rule either)."""
    if not stored:
        return []
    out = []
    try:
        for entry in stored.split(","):
            account_id, currency, side, amount = entry.split(":")
            out.append((codes.get(account_id, _NO_ACCOUNT), currency, side, int(amount)))
    except ValueError:
        return None
    out.sort()
    return out


_NO_ACCOUNT = "\x00(no such account)"


def _verify_postings_and_balances(
    report: VerifyReport, chunks: Iterator[list[tuple]] | None = None, progress: Progress | None = None
) -> tuple[_Finding | None, str | None]:
    """Every event through its posting rule, against its stored entries, and the balances against
    the sum of all rule lines. Returns the first (in chain order) sealed event whose content no
    longer hashes to its link, and the first event (by id) written below the last seal's horizon
    but not in the chain. ``progress`` gets the number of sealed events as they are done."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    first_mismatch = None
    changed: tuple[int, str] | None = None
    first_inserted = None
    loads = json.loads
    with connection.cursor() as cur:
        cur.execute("SELECT id::text, code, currency FROM ledger_account")
        accounts = cur.fetchall()
        codes = {account_id: code for account_id, code, _ in accounts}
        ids = {(code, currency): account_id for account_id, code, currency in accounts}
        for rows in _event_chunks(cur) if chunks is None else chunks:
            if progress:
                progress(sum(1 for row in rows if row[5] is not None))
            report.events += len(rows)
            for _id, public_id, event_type, payload_text, stored, seq, hash_differs, inserted in rows:
                if hash_differs and (changed is None or seq < changed[0]):
                    changed = (seq, public_id)
                if inserted and first_inserted is None:
                    first_inserted = public_id
                try:
                    lines: list[Line] = lines_for(event_type, loads(payload_text))
                except LedgerError as exc:
                    first_mismatch = (
                        first_mismatch or f"event {public_id} no longer passes its posting rule: {exc}"
                    )
                    continue
                for ln in lines:
                    t = totals[(ln.account, ln.currency)]
                    t[0 if ln.side == "D" else 1] += ln.amount
                if first_mismatch is None:
                    # Entries are written in the order of their lines, so the stored text usually
                    # reads exactly as the lines would; if it does not, compare (code, currency,
                    # side, amount) of both sides, sorted.
                    expected = ",".join(
                        [
                            f"{ids.get((ln.account, ln.currency))}:{ln.currency}:{ln.side}:{ln.amount}"
                            for ln in lines
                        ]
                    )
                    if (stored or "") != expected and sorted(
                        [(ln.account, ln.currency, ln.side, ln.amount) for ln in lines]
                    ) != _stored_lines(stored, codes):
                        first_mismatch = (
                            f"event {public_id}: stored entries differ from what its posting rule gives"
                        )
        if first_mismatch:
            report.fail(first_mismatch)
        cur.execute(
            "SELECT a.code, a.currency, b.debits, b.credits FROM ledger_balance b JOIN ledger_account a "
            "ON a.id = b.account_id ORDER BY a.code, a.currency"
        )
        live = {(code, cur_): [d, c] for code, cur_, d, c in cur.fetchall()}
    for key in sorted(set(live) | set(totals)):
        replayed = totals.get(key, [0, 0])
        current = live.get(key, [0, 0])
        if replayed != current:
            report.fail(
                f"balance of {key[0]} ({key[1]}) is {current[0] - current[1]} (net) but replay gives "
                f"{replayed[0] - replayed[1]}"
            )
            break
    return (_changed_finding(*changed) if changed else None), first_inserted
