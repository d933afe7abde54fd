"""Spawned benchmark processes that start work on the same instant and report back."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class ProcessPool:
    """``count`` processes running ``target(i, *args, inbox, outbox)``; each reports "ready" once,
    then "done" with {latencies, errors, end} for every "run" message, and exits on "stop"."""

    def __init__(self, target: Callable, args: tuple, count: int, label: str):
        ctx = multiprocessing.get_context("spawn")
        self.label = label
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(count)]
        self.procs = [
            ctx.Process(target=target, args=(i, *args, self.inboxes[i], self.outbox), daemon=True)
            for i in range(count)
        ]
        for p in self.procs:
            p.start()
        self._collect("ready", count, timeout=300)

    def _collect(self, kind: str, n: int, timeout: float) -> list:
        out: list = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                msg = self.outbox.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.label}s did not report {kind!r} in {timeout}s") from None
            if msg[0] == "crashed":
                raise RuntimeError(f"{self.label} {msg[1]} crashed:\n{msg[2]}")
            assert msg[0] == kind, msg
            out.append(msg[2])
        return out

    def run(self, message: dict, *, n: int, seconds: float) -> dict:
        """Start ``n`` processes at the same instant for ``seconds``; totals, rate and latencies."""
        start = time.monotonic() + 0.5
        for inbox in self.inboxes[:n]:
            inbox.put({"kind": "run", **message, "start": start, "deadline": start + seconds})
        results = self._collect("done", n, timeout=seconds + 120)
        latencies = [x for r in results for x in r["latencies"]]
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        elapsed = max(r["end"] for r in results) - start
        return {"count": len(latencies), "rate": len(latencies) / elapsed, "lat": latencies, "errors": errors}

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put({"kind": "stop"})
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
