"""Tamper evidence and replay.

Hash chain: each event's hash covers its fields and its entries (computed by PostgreSQL from
the stored rows); ``chain_hash = sha256(previous chain_hash + event_hash)``. Sealing runs off the
posting path (beat, or ``ledger seal``): it takes the events whose writing transactions have all
finished (``txid`` below the snapshot's xmin, so no in-flight transaction can still add an
earlier one), orders them by (txid, id), chains them and closes a block whose hash covers the
previous block, the block's Merkle root and its last chain hash. Posting takes no global lock.

Verification recomputes all of it from the rows and names the first bad event. Replay rebuilds
balances from the events alone (through the posting rules).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, transaction

from apps.ledger.models import Seal
from apps.ledger.rules import Line
from apps.tenants.db import current_schema

GENESIS = "0" * 64
SEAL_MAX_EVENTS = 50_000

# The event's canonical content, hashed inside PostgreSQL so seal and verify agree by construction.
EVENT_HASH_SQL = """
encode(sha256(convert_to(
    e.public_id || '|' || e.type || '|' || e.stream || '|' || e.version || '|' || e.idempotency_key || '|'
    || e.payload::text || '|' || (extract(epoch FROM e.occurred_at) * 1000000)::bigint || '|'
    || coalesce((SELECT string_agg(en.account_id || ':' || en.currency || ':' || en.side || ':' || en.amount, ','
                                   ORDER BY en.id)
                 FROM ledger_entry en WHERE en.event_id = e.id), ''),
    'UTF8')), 'hex')
"""

Progress = Callable[[int], None]


def _h(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def merkle_root(leaves: list[str]) -> str:
    if not leaves:
        return GENESIS
    level = leaves
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        level = [_h(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_proof(leaves: list[str], index: int) -> list[tuple[str, str]]:
    """Sibling path for ``leaves[index]``: [(side, hash)], side 'L' or 'R' of the sibling."""
    proof = []
    level = leaves
    while len(level) > 1:
        if len(level) % 2:
            level = [*level, level[-1]]
        sibling = index ^ 1
        proof.append(("L" if sibling < index else "R", level[sibling]))
        level = [_h(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        index //= 2
    return proof


def block_hash(*, number: int, prev_hash: str, merkle: str, last_chain_hash: str, count: int) -> str:
    return _h(str(number), prev_hash, merkle, last_chain_hash, str(count))


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
        cur.execute(
            f"SELECT e.id, e.txid, {EVENT_HASH_SQL} FROM ledger_event e "
            "WHERE e.txid >= %s AND e.txid < %s ORDER BY e.txid, e.id LIMIT %s",
            [prev_horizon, horizon, max_events + 1],
        )
        rows = cur.fetchall()
        if not rows:
            return 0
        block_horizon = horizon
        if len(rows) > max_events:
            # Cut at a transaction boundary so "every event below the horizon is sealed" holds.
            cut_txid = rows[max_events][1]
            kept = [r for r in rows if r[1] < cut_txid]
            if kept:
                rows, block_horizon = kept, cut_txid
            else:  # one transaction larger than a block: seal all of it
                cur.execute(
                    f"SELECT e.id, e.txid, {EVENT_HASH_SQL} FROM ledger_event e WHERE e.txid = %s ORDER BY e.id",
                    [cut_txid],
                )
                rows, block_horizon = cur.fetchall(), cut_txid + 1
        seqs, event_ids, event_hashes, chain_hashes = [], [], [], []
        for event_id, _txid, event_hash in rows:
            last_seq += 1
            chain = _h(chain, event_hash)
            seqs.append(last_seq)
            event_ids.append(event_id)
            event_hashes.append(event_hash)
            chain_hashes.append(chain)
        cur.execute(
            "INSERT INTO ledger_chain_link (seq, event_id, block, event_hash, chain_hash) "
            "SELECT s, e, %s, eh, ch FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS v(s, e, eh, ch)",
            [number, seqs, event_ids, event_hashes, chain_hashes],
        )
        root = merkle_root(event_hashes)
        cur.execute(
            "INSERT INTO ledger_seal (number, first_seq, last_seq, event_count, horizon_txid, prev_hash, merkle_root, "
            "last_chain_hash, hash, sealed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            [
                number,
                seqs[0],
                seqs[-1],
                len(seqs),
                block_horizon,
                prev_hash,
                root,
                chain,
                block_hash(
                    number=number, prev_hash=prev_hash, merkle=root, last_chain_hash=chain, count=len(seqs)
                ),
            ],
        )
        return len(rows)


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
        "sealed_at": seal.sealed_at.isoformat(),
    }


def ledger_prove(*, public_id: str) -> dict:
    """Inclusion proof of one sealed event: its hash, the Merkle path to its block's root, and
    the chain of block hashes from that block to the latest digest."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT l.seq, l.block, l.event_hash FROM ledger_chain_link l JOIN ledger_event e ON e.id = l.event_id "
            "WHERE e.public_id = %s",
            [public_id],
        )
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"event {public_id} is not sealed (or does not exist)")
        seq, block, event_hash = row
        cur.execute("SELECT event_hash FROM ledger_chain_link WHERE block = %s ORDER BY seq", [block])
        leaves = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT number, prev_hash, merkle_root, last_chain_hash, event_count, hash FROM ledger_seal "
            "WHERE number >= %s ORDER BY number",
            [block],
        )
        blocks = [
            {"number": n, "prev_hash": p, "merkle_root": m, "last_chain_hash": lc, "count": c, "hash": h}
            for n, p, m, lc, c, h in cur.fetchall()
        ]
    index = leaves.index(event_hash) if event_hash in leaves else -1
    return {
        "event": public_id,
        "seq": seq,
        "event_hash": event_hash,
        "leaf_index": index,
        "merkle_path": merkle_proof(leaves, index),
        "blocks": blocks,
    }


def proof_check(proof: dict, digest: dict) -> bool:
    """Check an inclusion proof against a published digest, with nothing but hashing."""
    node = proof["event_hash"]
    for side, sibling in proof["merkle_path"]:
        node = _h(sibling, node) if side == "L" else _h(node, sibling)
    blocks = proof["blocks"]
    if not blocks or blocks[0]["merkle_root"] != node:
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
        )
        if expected != b["hash"]:
            return False
        prev = b["hash"]
    return prev == digest["hash"] and blocks[-1]["number"] == digest["block"]


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
    from apps.ledger.services import lines_for

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
    from apps.ledger.services import _accounts

    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("LOCK TABLE ledger_balance IN EXCLUSIVE MODE")
        replayed = replay_balances(progress=progress)
        accounts = _accounts(replayed.balances.keys()) if replayed.balances else {}
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
    balance projection against a replay. Read-only; runs in one REPEATABLE READ snapshot."""
    report = VerifyReport()
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        _verify_chain(report, progress)
        _verify_seals(report, digest)
        _verify_double_entry(report)
        _verify_postings_and_balances(report)
    return report


def _verify_chain(report: VerifyReport, progress: Progress | None) -> None:
    chain = GENESIS
    expected_seq = 1
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT l.seq, l.event_id, l.event_hash, l.chain_hash, e.public_id, "
            f"CASE WHEN e.id IS NULL THEN NULL ELSE {EVENT_HASH_SQL} END "
            "FROM ledger_chain_link l LEFT JOIN ledger_event e ON e.id = l.event_id ORDER BY l.seq"
        )
        while rows := cur.fetchmany(10_000):
            for seq, event_id, stored_event_hash, stored_chain, public_id, actual_hash in rows:
                report.sealed += 1
                if not report.ok:
                    continue
                name = public_id or f"event id {event_id}"
                if seq != expected_seq:
                    report.fail(f"chain gap: expected link {expected_seq}, found {seq} (a link was removed)")
                    continue
                expected_seq += 1
                if actual_hash is None:
                    report.fail(f"event id {event_id} (chain link {seq}) is missing: it was deleted")
                elif actual_hash != stored_event_hash:
                    report.fail(
                        f"event {name} (chain link {seq}) was changed after sealing: its content no "
                        "longer matches its sealed hash"
                    )
                chain = _h(chain, stored_event_hash)
                if report.ok and chain != stored_chain:
                    report.fail(f"chain broken at link {seq} ({name}): links were reordered or rewritten")
            if progress:
                progress(len(rows))
        # Events written by transactions below the last seal's horizon must all be in the chain.
        cur.execute(
            "SELECT e.public_id, e.id FROM ledger_event e "
            "WHERE e.txid < coalesce((SELECT max(horizon_txid) FROM ledger_seal), 0) "
            "AND NOT EXISTS (SELECT 1 FROM ledger_chain_link l WHERE l.event_id = e.id) ORDER BY e.id LIMIT 1"
        )
        inserted = cur.fetchone()
        if inserted:
            report.fail(f"event {inserted[0]} was inserted into sealed history (it is not in the chain)")
        cur.execute("SELECT count(*) FROM ledger_event")
        report.events = cur.fetchone()[0]


def _verify_seals(report: VerifyReport, digest: dict | None) -> None:
    prev = GENESIS
    with connection.cursor() as cur:
        cur.execute(
            "SELECT number, first_seq, last_seq, event_count, prev_hash, merkle_root, last_chain_hash, hash "
            "FROM ledger_seal ORDER BY number"
        )
        seals = cur.fetchall()
        for number, _first, _last, count, prev_hash, root, last_chain, stored in seals:
            cur.execute(
                "SELECT event_hash, chain_hash FROM ledger_chain_link WHERE block = %s ORDER BY seq", [number]
            )
            links = cur.fetchall()
            problem = None
            if prev_hash != prev:
                problem = f"block {number} does not follow block {number - 1}"
            elif len(links) != count or (links and links[-1][1] != last_chain):
                problem = f"block {number}: its links no longer match the seal"
            elif merkle_root([x[0] for x in links]) != root:
                problem = f"block {number}: Merkle root mismatch"
            elif (
                block_hash(
                    number=number, prev_hash=prev_hash, merkle=root, last_chain_hash=last_chain, count=count
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


def _verify_double_entry(report: VerifyReport) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT t.id, ev.public_id, en.currency FROM ledger_entry en JOIN ledger_transaction t ON t.id = "
            "en.transaction_id JOIN ledger_event ev ON ev.id = t.event_id GROUP BY t.id, ev.public_id, en.currency "
            "HAVING sum(CASE WHEN en.side = 'D' THEN en.amount ELSE -en.amount END) <> 0 ORDER BY t.id LIMIT 1"
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


def _verify_postings_and_balances(report: VerifyReport) -> None:
    from apps.ledger.errors import LedgerError
    from apps.ledger.services import lines_for

    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    first_mismatch = None
    last_id = 0
    with connection.cursor() as cur:
        while True:
            cur.execute(
                "SELECT e.id, e.public_id, e.type, e.payload::text, "
                "  (SELECT array_agg(a.code || '|' || en.currency || '|' || en.side || '|' || en.amount ORDER BY "
                "   a.code, en.currency, en.side, en.amount) FROM ledger_entry en JOIN ledger_account a ON "
                "   a.id = en.account_id WHERE en.event_id = e.id) "
                "FROM ledger_event e WHERE e.id > %s ORDER BY e.id LIMIT 20000",
                [last_id],
            )
            rows = cur.fetchall()
            if not rows:
                break
            for _id, public_id, event_type, payload_text, stored in rows:
                try:
                    lines: list[Line] = lines_for(event_type, json.loads(payload_text))
                except LedgerError as exc:
                    first_mismatch = (
                        first_mismatch or f"event {public_id} no longer passes its posting rule: {exc}"
                    )
                    continue
                for ln in lines:
                    t = totals[(ln.account, ln.currency)]
                    t[0 if ln.side == "D" else 1] += ln.amount
                derived = sorted(f"{ln.account}|{ln.currency}|{ln.side}|{ln.amount}" for ln in lines)
                if first_mismatch is None and derived != (stored or []):
                    first_mismatch = (
                        f"event {public_id}: stored entries differ from what its posting rule gives"
                    )
            last_id = rows[-1][0]
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
