"""Named fault points and the seeded plan that decides, at each one, whether a fault fires.

Every decision is drawn from one ``random.Random`` per seed in the order the points are reached,
so the same seed reaches the same points and fires the same faults. Points are only armed while
the schedule runs (``FaultPlan.armed``); set-up, quiescence and the invariant checks run with
every fault off.

The points (the kind of a point is its name with the operation replaced by ``*``):

- ``gateway.<op>.before``: the processor is never reached (connection refused): a gateway error.
- ``gateway.<op>.answer_lost``: the processor did the work, the answer is lost (a timeout).
- ``gateway.<op>.duplicate``: the call reaches the processor twice (a client-side network retry).
- ``gateway.authorize.late_answer_inflight``: the call is slow; our timeout fires and the
  resolver and reconcile jobs run while the processor has not processed it yet; then it is
  processed and its answer arrives, late.
- ``gateway.authorize.late_answer_processed``: as above, but the processor had processed it
  before the resolver looked.
- ``task.die_after_gateway``: the worker process dies (a BaseException) right after a processor
  call made by a durable task: its row stays leased until the sweeper hands it out again.
- ``api.process_died``: the web process dies right after a processor call made inside an API
  request: no response, and its idempotency record is left in flight (nothing releases it).
- ``api.response_lost``: the API did its work but the client never got the response; it retries
  with the same Idempotency-Key.
- ``db.commit.before`` / ``db.commit.after``: COMMIT fails before reaching the database (rolled
  back), or after it (committed, but the caller sees an error).
- ``db.connection_dropped``: the database connection is closed under a query.
- ``webhook.lost`` / ``webhook.duplicate`` / ``webhook.reorder``: a processor's webhook is never
  delivered, delivered twice, or held back and delivered after later ones.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

KINDS = (
    "gateway.*.before",
    "gateway.*.answer_lost",
    "gateway.*.duplicate",
    "gateway.authorize.late_answer_inflight",
    "gateway.authorize.late_answer_processed",
    "task.die_after_gateway",
    "api.process_died",
    "api.response_lost",
    "db.commit.before",
    "db.commit.after",
    "db.connection_dropped",
    "webhook.lost",
    "webhook.duplicate",
    "webhook.reorder",
)


def kind_of(point: str) -> str:
    parts = point.split(".")
    if parts[0] == "gateway" and point not in KINDS:
        return f"gateway.*.{parts[2]}"
    return point


class WorkerDeath(BaseException):
    """A process killed mid-work (kill -9): nothing in the process can catch it and clean up."""


# Per-kind probability at each point reached, before the seed's intensity scales it.
BASE_RATES = {
    "gateway.*.before": 0.15,
    "gateway.*.answer_lost": 0.15,
    "gateway.*.duplicate": 0.05,
    "gateway.authorize.late_answer_inflight": 0.04,
    "gateway.authorize.late_answer_processed": 0.04,
    "task.die_after_gateway": 0.10,
    "api.process_died": 0.03,
    "api.response_lost": 0.08,
    # Per operation of the schedule (see ``FaultPlan.begin_op``), not per commit or query.
    "db.commit.before": 0.10,
    "db.commit.after": 0.10,
    "db.connection_dropped": 0.06,
    "webhook.lost": 0.15,
    "webhook.duplicate": 0.15,
    "webhook.reorder": 0.20,
}


@dataclass
class FaultPlan:
    """Which fault kinds a seed enables (swarm testing: each seed a different mix) and how hard."""

    seed: int
    rates: dict[str, float] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    armed: bool = False
    step: int = -1  # the schedule's operation being run, for the log

    @classmethod
    def for_seed(cls, seed: int) -> FaultPlan:
        rng = random.Random(f"chaos:{seed}:plan")
        intensity = rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])
        # Swarm testing: each kind is left out of a seed now and then, so rarer interleavings
        # (a fault that would otherwise always be masked by another) get their turn.
        rates = {k: (0.0 if rng.random() < 0.2 else min(0.9, r * intensity)) for k, r in BASE_RATES.items()}
        return cls(seed=seed, rates=rates)

    _streams: dict[str, random.Random] = field(default_factory=dict, repr=False)
    _db_at: dict[str, int] = field(default_factory=dict, repr=False)  # kind -> nth event in this op
    _db_seen: Counter = field(default_factory=Counter, repr=False)

    def _stream(self, kind: str) -> random.Random:
        # One stream per kind: how often one kind's point is reached never shifts another's draws.
        if kind not in self._streams:
            self._streams[kind] = random.Random(f"chaos:{self.seed}:faults:{kind}")
        return self._streams[kind]

    def fire(self, point: str, detail: str = "") -> bool:
        """Whether the fault at ``point`` fires now (counted and logged when it does)."""
        if not self.armed:
            return False
        kind = kind_of(point)
        if kind.startswith("db."):
            return self._fire_db(kind, detail)
        rate = self.rates.get(kind, 0.0)
        if rate <= 0 or self._stream(kind).random() >= rate:
            return False
        self._count(point, detail)
        return True

    def begin_op(self, step: int) -> None:
        """A new operation: draw, once, whether and at which commit (or query) of it each database
        fault strikes. Commits and queries vary in number with caches and the ledger's sealing,
        so they are counted within the operation and never consume draws of their own."""
        self.step = step
        self._db_seen.clear()
        self._db_at.clear()
        for kind, span in (("db.commit.before", 12), ("db.commit.after", 12), ("db.connection_dropped", 60)):
            rng = self._stream(kind)
            hit, nth = rng.random(), rng.randint(1, span)
            if hit < self.rates.get(kind, 0.0):
                self._db_at[kind] = nth

    def _fire_db(self, kind: str, detail: str) -> bool:
        if kind not in self._db_at:
            return False
        self._db_seen[kind] += 1
        if self._db_seen[kind] != self._db_at[kind]:
            return False
        self._count(kind, detail)
        return True

    def _count(self, point: str, detail: str) -> None:
        self.counts[point] += 1
        self.log.append(f"op#{self.step} {point}{f' ({detail})' if detail else ''}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_kind(self) -> dict[str, int]:
        out: Counter = Counter()
        for point, n in self.counts.items():
            out[kind_of(point)] += n
        return dict(sorted(out.items()))
