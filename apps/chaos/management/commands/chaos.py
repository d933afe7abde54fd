"""``python manage.py chaos --seeds N [--start S] [--json] [--verbose]``: the fault-injection
harness (apps.chaos). Each seed runs in a scratch marketplace of its own, dropped afterwards.

Prints one line per seed to stderr, then a summary (with ``--json``: one JSON line on stdout).
Exits 1 with one readable line when an invariant was broken, naming the failing seeds and how to
replay one."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.chaos.faults import kind_of
from apps.chaos.harness import run_seed
from apps.chaos.result import SeedResult


def report(results: list[SeedResult], wall: float) -> dict:
    """The run's figures (the JSON contract)."""
    faults: Counter = Counter()
    kinds: Counter = Counter()
    by_invariant: Counter = Counter()
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


def merge_reports(parts: list[dict], wall: float) -> dict:
    """One run's figures from the figures of its slices (``--jobs``)."""
    parts = [p for p in parts if p.get("seeds")]
    seeds = sum(p["seeds"] for p in parts)
    summed = (
        "seeds",
        "operations",
        "payments",
        "processor_charges",
        "faults_injected",
        "violations",
        "double_charges",
        "stuck",
        "auto_refunded_late_charges",
    )
    out: dict = {key: sum(p[key] for p in parts) for key in summed}
    for key in ("faults_by_kind", "faults_by_point", "violations_by_invariant"):
        total: Counter = Counter()
        for p in parts:
            total.update(p[key])
        out[key] = dict(sorted(total.items()))
    ordered = [
        "seeds", "start", "operations", "payments", "processor_charges", "faults_injected",
        "faults_by_kind", "faults_by_point", "violations", "violations_by_invariant",
        "double_charges", "stuck", "ledger_verified", "auto_refunded_late_charges",
        "failing_seeds", "wall_seconds", "seconds_per_seed",
    ]  # fmt: skip
    out["start"] = min((p["start"] for p in parts), default=None)
    out["ledger_verified"] = all(p["ledger_verified"] for p in parts)
    out["failing_seeds"] = sorted(s for p in parts for s in p["failing_seeds"])
    out["wall_seconds"] = round(wall, 2)
    out["seconds_per_seed"] = (
        round(sum(p["seconds_per_seed"] * p["seeds"] for p in parts) / seeds, 3) if seeds else 0
    )
    return {key: out[key] for key in ordered}


class Command(BaseCommand):
    help = "Run the deterministic fault-injection harness for N seeds and check the invariants."

    def add_arguments(self, parser):
        parser.add_argument("--seeds", type=int, required=True, help="how many seeds to run")
        parser.add_argument("--start", type=int, default=1, help="the first seed (default 1)")
        parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            help="run the seeds in this many processes at once, each a contiguous slice (default 1)",
        )
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
        jobs = max(1, min(opts["jobs"], n))
        if jobs > 1 and not opts["verbose"]:
            figures = merge_reports(self._slices(n, start, jobs, opts), time.perf_counter() - started)
            self._finish(figures, n, opts)
            return
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
        self._finish(report(results, time.perf_counter() - started), n, opts)

    @staticmethod
    def _slices(n: int, start: int, jobs: int, opts: dict) -> list[dict]:
        """Run contiguous slices of the seeds in ``jobs`` processes (their progress lines go to
        stderr as they come) and return each slice's figures."""
        size, extra = divmod(n, jobs)
        procs, first = [], start
        for j in range(jobs):
            count = size + (1 if j < extra else 0)
            argv = [
                sys.executable,
                "manage.py",
                "chaos",
                "--seeds",
                str(count),
                "--start",
                str(first),
                "--json",
            ]
            if opts["logs"]:
                argv.append("--logs")
            procs.append(subprocess.Popen(argv, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True))
            first += count
        parts = []
        for proc in procs:
            out, _ = proc.communicate()
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if not lines:
                raise CommandError(f"a slice of the run failed to report (exit {proc.returncode})")
            parts.append(json.loads(lines[-1]))
        return parts

    def _finish(self, figures: dict, n: int, opts: dict) -> None:
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
