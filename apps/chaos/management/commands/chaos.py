"""``python manage.py chaos --seeds N [--start S] [--json] [--verbose]``: the fault-injection
harness (apps.chaos). Each seed runs in a scratch marketplace of its own, dropped afterwards.

Prints one line per seed to stderr, then a summary (with ``--json``: one JSON line on stdout).
Exits 1 with one readable line when an invariant was broken, naming the failing seeds and how to
replay one."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from apps.chaos.harness import SeedResult, run_seed


def report(results: list[SeedResult], wall: float) -> dict:
    """The run's figures (the JSON contract)."""
    faults: Counter = Counter()
    kinds: Counter = Counter()
    by_invariant: Counter = Counter()
    from apps.chaos.faults import kind_of

    for r in results:
        faults.update(r.faults)
        for point, n in r.faults.items():
            kinds[kind_of(point)] += n
        by_invariant.update(v["invariant"] for v in r.violations)
    seeds = len(results)
    return {
        "seeds": seeds,
        "start": results[0].seed if results else None,
        "operations": sum(r.operations for r in results),
        "payments": sum(r.payments for r in results),
        "processor_charges": sum(r.charges for r in results),
        "faults_injected": sum(faults.values()),
        "faults_by_kind": dict(sorted(kinds.items())),
        "faults_by_point": dict(sorted(faults.items())),
        "violations": sum(len(r.violations) for r in results),
        "violations_by_invariant": dict(sorted(by_invariant.items())),
        "double_charges": sum(r.double_charges for r in results),
        "stuck": sum(r.stuck for r in results),
        "ledger_verified": all(r.ledger_verified for r in results),
        "auto_refunded_late_charges": sum(r.auto_refunded_late_charges for r in results),
        "failing_seeds": [r.seed for r in results if r.violations],
        "wall_seconds": round(wall, 2),
        "seconds_per_seed": round(sum(r.seconds for r in results) / seeds, 3) if seeds else 0,
    }


class Command(BaseCommand):
    help = "Run the deterministic fault-injection harness for N seeds and check the invariants."

    def add_arguments(self, parser):
        parser.add_argument("--seeds", type=int, required=True, help="how many seeds to run")
        parser.add_argument("--start", type=int, default=1, help="the first seed (default 1)")
        parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
        parser.add_argument(
            "--verbose", action="store_true", help="print each seed's schedule, faults and violations"
        )
        parser.add_argument(
            "--logs", action="store_true", help="keep the application's logs (faults make them loud)"
        )

    def handle(self, *args, **opts):
        n, start = opts["seeds"], opts["start"]
        if n < 1:
            raise CommandError("--seeds must be at least 1")
        if not opts["logs"]:
            logging.disable(logging.ERROR)  # injected faults log errors by design; the report says it all
        try:
            self._run(n, start, opts)
        finally:
            logging.disable(logging.NOTSET)

    def _run(self, n: int, start: int, opts: dict) -> None:
        started = time.perf_counter()
        results: list[SeedResult] = []
        for seed in range(start, start + n):
            result = run_seed(seed)
            results.append(result)
            mark = "ok" if not result.violations else f"{len(result.violations)} VIOLATIONS"
            print(
                f"seed {seed}: {result.operations} ops, {result.faults_injected} faults, "
                f"{result.payments} payments, {result.seconds:.2f}s: {mark}",
                file=sys.stderr,
                flush=True,
            )
            if opts["verbose"]:
                self._explain(result)
        figures = report(results, time.perf_counter() - started)
        if opts["json"]:
            self.stdout.write(json.dumps(figures))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key:<28} {value}")
        if not figures["payments"]:
            # A run that made no payment proved nothing (e.g. the template schema is not migrated).
            raise CommandError(
                f"no payment was made in {n} seeds, so nothing was checked; migrate first "
                "(make chaos does) and replay a seed with --verbose --logs"
            )
        failing = figures["failing_seeds"]
        if failing:
            shown = ", ".join(map(str, failing[:20])) + (" ..." if len(failing) > 20 else "")
            raise CommandError(
                f"{figures['violations']} violations in {len(failing)} of {n} seeds ({shown}); "
                f"replay one with: python manage.py chaos --seeds 1 --start {failing[0]} --verbose"
            )

    @staticmethod
    def _explain(result: SeedResult) -> None:
        err = sys.stderr
        print(f"--- seed {result.seed}: schedule", file=err)
        for line in result.schedule:
            print(f"  {line}", file=err)
        print(f"--- seed {result.seed}: faults injected", file=err)
        for line in result.fault_log:
            print(f"  {line}", file=err)
        print(f"--- seed {result.seed}: violations", file=err)
        for v in result.violations:
            print(f"  [{v['invariant']}] {v['payment']}: {v['details']}", file=err)
        if not result.violations:
            print("  none", file=err)
