"""Keep `make run`'s processes (web, worker, beat) running until told to stop.

Guarantees:
- Each child runs in its own process group, so stopping it reaches its own children too (Celery's
  pool processes), and Ctrl-C in the terminal reaches only the supervisor, which then stops them all.
- A child that exits, with any code or signal, is started again: after ``backoff_initial`` seconds,
  doubling while it keeps dying, up to ``backoff_max``; once it has stayed up ``stable_after``
  seconds the delay starts over. A child that crash-loops is never given up on (the log says it is
  crash-looping), and one child dying never stops the others.
- One log line per restart: the child, its exit code (or signal), how long it ran, the delay.
  Whatever its group left behind (an orphaned pool process) is killed before it is started again.
- ``stop()`` ends every child's whole process group: SIGTERM, then SIGKILL after ``grace`` seconds.

Time and processes are injectable (``clock``, ``spawn``, ``kill_group``) so the schedule can be tested
without waiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def spawn_in_own_group(command: list[str], cwd: Path | None = None) -> Process:
    return subprocess.Popen(command, cwd=cwd, start_new_session=True)


def kill_process_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stderr(line: str) -> None:
    print(f"supervisor: {line}", file=sys.stderr, flush=True)


def describe_exit(code: int) -> str:
    """``code 1`` or ``signal SIGKILL`` (Popen reports death by signal N as -N)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


@dataclass
class Child:
    name: str
    command: list[str]
    process: Process | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # set while it waits to be started again
    failures: int = 0  # exits in a row, each before it had stayed up `stable_after` seconds
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        commands: Mapping[str, list[str]],
        *,
        cwd: Path | None = None,
        spawn: Callable[[list[str], Path | None], Process] = spawn_in_own_group,
        kill_group: Callable[[int, signal.Signals], None] = kill_process_group,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = _stderr,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        grace: float = 15.0,
        tick: float = 0.3,
    ):
        self.children = {name: Child(name, list(command)) for name, command in commands.items()}
        self.cwd = cwd
        self.spawn = spawn
        self.kill_group = kill_group
        self.clock = clock
        self.log = log
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.grace = grace
        self.tick = tick

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        for child in self.children.values():
            self._start(child)

    def check(self) -> None:
        """One look at every child: schedule a restart for the dead, start those whose delay is over."""
        now = self.clock()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    try:
                        self._start(child)
                    except OSError as exc:  # e.g. out of processes: keep trying, never give up
                        child.restart_at = now + self.backoff_max
                        self.log(
                            f"{child.name} could not be started ({exc}); trying again in {self.backoff_max:g}s"
                        )
                continue
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                continue
            self.kill_group(child.process.pid, signal.SIGKILL)  # what it left behind
            ran = now - child.started_at
            if ran >= self.stable_after:
                child.failures = 0
            delay = min(self.backoff_initial * 2**child.failures, self.backoff_max)
            child.failures += 1
            child.restart_at = now + delay
            looping = (
                f"; crash-looping ({child.failures} exits in a row within {self.stable_after:g}s of starting),"
                f" retrying with back-off up to {self.backoff_max:g}s"
                if child.failures > 1
                else ""
            )
            self.log(
                f"{child.name} (pid {child.process.pid}) exited with {describe_exit(code)} after {ran:.1f}s; "
                f"restarting it in {delay:g}s{looping}"
            )

    def run(self, stop: threading.Event) -> None:
        """Start every child, keep them running until ``stop`` is set, then stop them all."""
        self.start()
        try:
            while not stop.wait(self.tick):
                self.check()
        finally:
            self.stop()

    def run_until_signalled(self) -> int:
        """``run`` until SIGINT or SIGTERM (Ctrl-C). Returns 0: a stop asked for is a clean exit."""
        stop = threading.Event()

        def request_stop(signum, _frame) -> None:
            stop.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        self.run(stop)
        return 0

    # ------------------------------------------------------------------ processes

    def _start(self, child: Child) -> None:
        child.process = self.spawn(child.command, self.cwd)
        child.started_at = self.clock()
        child.restart_at = None
        again = f" (restart {child.restarts})" if child.restarts else ""
        self.log(f"started {child.name} (pid {child.process.pid}){again}")

    def running(self) -> list[Child]:
        return [
            c
            for c in self.children.values()
            if c.restart_at is None and c.process and c.process.poll() is None
        ]

    def stop(self) -> None:
        """End every child's process group: SIGTERM, up to ``grace`` seconds, then SIGKILL."""
        alive = self.running()
        for child in alive:
            assert child.process is not None
            self.kill_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in alive:
            assert child.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for child in alive:
            assert child.process is not None
            if child.process.poll() is None:
                self.log(f"{child.name} did not stop in {self.grace:g}s; killed")
            self.kill_group(child.process.pid, signal.SIGKILL)  # the whole group: worker children included
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
        self.log("stopped " + ", ".join(self.children))
