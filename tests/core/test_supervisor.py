"""`make run` supervises web, worker and beat: a child that dies is restarted with back-off, one log
line each time, and a stop ends every child's whole process group."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from config.supervisor import Supervisor, describe_exit
from tests.support import BASE

# --------------------------------------------------------------------------- the schedule (no processes)


class FakeProcess:
    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


class FakeWorld:
    """A clock that moves only when told to, processes that die only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.processes: list[FakeProcess] = []
        self.signals: list[tuple[int, signal.Signals]] = []
        self.lines: list[str] = []

    def spawn(self, command: list[str], cwd: Path | None) -> FakeProcess:
        process = FakeProcess(pid=100 + len(self.processes))
        self.processes.append(process)
        return process

    def kill_group(self, pgid: int, sig: signal.Signals) -> None:
        self.signals.append((pgid, sig))
        for process in self.processes:
            if process.pid == pgid and process.returncode is None:
                process.returncode = -sig

    def supervisor(self) -> Supervisor:
        return Supervisor(
            {"web": ["web"], "worker": ["worker"], "beat": ["beat"]},
            spawn=self.spawn,
            kill_group=self.kill_group,
            clock=lambda: self.now,
            log=self.lines.append,
            grace=0,
        )


def _crash(world: FakeWorld, sup: Supervisor, name: str, code: int, after: float) -> float:
    """Let ``name`` run ``after`` seconds, die with ``code``; return the delay before its restart."""
    world.now += after
    process = sup.children[name].process
    assert isinstance(process, FakeProcess)
    process.returncode = code
    sup.check()
    restart_at = sup.children[name].restart_at
    assert restart_at is not None
    delay = restart_at - world.now
    world.now = restart_at
    sup.check()
    return delay


def test_a_child_that_keeps_dying_is_restarted_with_doubling_delays_up_to_30s_and_never_given_up():
    # given the stack running
    world = FakeWorld()
    sup = world.supervisor()
    sup.start()

    # when the worker dies eight times in a row, each time within a second of starting
    delays = [_crash(world, sup, "worker", 1, after=0.5) for _ in range(8)]

    # then each restart waited twice as long as the last, up to 30 s, and it is running again
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert sup.children["worker"].restarts == 8
    assert [c.name for c in sup.running()] == ["web", "worker", "beat"]
    # and web and beat were never touched
    assert [p.pid for p in world.processes[:3]] == [100, 101, 102]
    assert world.processes[0].returncode is None and world.processes[2].returncode is None
    assert world.signals == [(101, signal.SIGKILL)] + [(p, signal.SIGKILL) for p in range(103, 110)]
    # and one line per restart, saying it is crash-looping from the second exit on
    restarts = [line for line in world.lines if "exited" in line]
    assert restarts[0] == "worker (pid 101) exited with code 1 after 0.5s; restarting it in 1s"
    assert restarts[1] == (
        "worker (pid 103) exited with code 1 after 0.5s; restarting it in 2s; crash-looping "
        "(2 exits in a row within 60s of starting), retrying with back-off up to 30s"
    )
    assert len(restarts) == 8
    assert world.lines[-1] == "started worker (pid 110) (restart 8)"


def test_the_delay_starts_over_once_the_child_stayed_up_a_minute():
    world = FakeWorld()
    sup = world.supervisor()
    sup.start()
    assert [_crash(world, sup, "beat", -9, after=1) for _ in range(3)] == [1, 2, 4]

    # when it then runs for a minute before dying
    delay = _crash(world, sup, "beat", -9, after=60)

    # then it is treated as a first failure again
    assert delay == 1
    assert world.lines[-2] == "beat (pid 105) exited with signal SIGKILL after 60.0s; restarting it in 1s"


def test_stop_ends_every_group_and_does_not_restart_anything():
    world = FakeWorld()
    sup = world.supervisor()
    sup.start()
    world.processes[1].returncode = 1
    sup.check()  # the worker waits for its restart

    sup.stop()

    assert world.signals[1:] == [
        (100, signal.SIGTERM),
        (102, signal.SIGTERM),
        (100, signal.SIGKILL),
        (102, signal.SIGKILL),
    ]
    assert sup.running() == []
    assert world.lines[-1] == "stopped web, worker, beat"


def test_exit_descriptions():
    assert describe_exit(0) == "code 0"
    assert describe_exit(3) == "code 3"
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(-15) == "signal SIGTERM"


# --------------------------------------------------------------------------- real processes

# A child that starts a grandchild in its group (as Celery's pool does) and then waits.
FAMILY = [
    sys.executable,
    "-c",
    "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)",
]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            members.append(int(entry))
    return members


def _members_once(pgid: int, settled) -> list[int]:
    """The group's members once ``settled(members)`` holds (at most ~10 s): a grandchild starts a
    moment after its parent, and a killed process leaves /proc a moment after the signal."""
    pause = threading.Event()
    members = _group_members(pgid)
    for _ in range(500):
        if settled(members):
            break
        pause.wait(0.02)
        members = _group_members(pgid)
    return members


def _gone(pgid: int) -> list[int]:
    return _members_once(pgid, lambda members: members == [])


def test_a_killed_child_is_restarted_and_stop_leaves_no_process_behind():
    # given two real supervised children, each with a grandchild in its group
    lines: list[str] = []
    now = [0.0]
    sup = Supervisor({"worker": FAMILY, "beat": FAMILY}, log=lines.append, clock=lambda: now[0], grace=5)
    sup.start()
    first = sup.children["worker"].process
    assert first is not None
    beat = sup.children["beat"].process
    assert beat is not None
    orphan = [pid for pid in _members_once(first.pid, lambda m: len(m) == 2) if pid != first.pid]
    assert len(orphan) == 1
    try:
        # when the worker is killed with SIGKILL
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        now[0] = 5.0
        sup.check()
        # its orphaned grandchild went with it
        assert _gone(first.pid) == []
        now[0] = 6.0
        sup.check()

        # then it was restarted, logged, and beat kept running
        second = sup.children["worker"].process
        assert second is not None
        assert second.pid != first.pid
        assert second.poll() is None
        assert beat.poll() is None
        assert lines[2:] == [
            f"worker (pid {first.pid}) exited with signal SIGKILL after 5.0s; restarting it in 1s",
            f"started worker (pid {second.pid}) (restart 1)",
        ]
        groups = [second.pid, beat.pid]
        assert all(len(_members_once(pgid, lambda m: len(m) == 2)) == 2 for pgid in groups)
    finally:
        # when stopped
        sup.stop()

    # then no child and no grandchild is left
    assert [_gone(pgid) for pgid in groups] == [[], []]
    assert sup.running() == []


SUPERVISED_SCRIPT = textwrap.dedent(
    """
    import sys
    from config.supervisor import Supervisor
    family = {family!r}
    sys.exit(Supervisor({{"worker": family, "beat": family}}, backoff_initial=0.1, grace=5).run_until_signalled())
    """
)


def test_sigterm_stops_a_running_supervisor_and_every_child_it_restarted():
    # given a supervisor process (as `make run` runs it) with its log read line by line
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED_SCRIPT.format(family=FAMILY)],
        cwd=BASE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr

    def read() -> None:
        for line in stderr:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def next_line() -> str:
        return lines.get(timeout=30)

    try:
        started = dict(
            (line.split()[2], int(line.split()[4].rstrip(")"))) for line in (next_line(), next_line())
        )
        assert sorted(started) == ["beat", "worker"]

        # when the worker is killed
        os.kill(started["worker"], signal.SIGKILL)

        # then the supervisor says so and starts it again
        exited = next_line()
        assert exited.startswith(
            f"supervisor: worker (pid {started['worker']}) exited with signal SIGKILL after "
        )
        assert exited.endswith("restarting it in 0.1s")
        restarted = next_line()
        assert restarted.startswith("supervisor: started worker (pid ") and restarted.endswith("(restart 1)")
        new_worker = int(restarted.split()[4].rstrip(")"))

        # when it is asked to stop
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # then it stopped cleanly, and nothing of it is left
    assert next_line() == "supervisor: stopped worker, beat"
    assert [_gone(pgid) for pgid in (new_worker, started["beat"])] == [[], []]


def test_a_child_that_cannot_be_started_again_is_retried_at_the_longest_delay():
    world = FakeWorld()
    sup = world.supervisor()
    sup.start()
    world.processes[2].returncode = 1
    sup.check()
    world.now += 1

    def no_more_processes(command: list[str], cwd: Path | None) -> FakeProcess:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    sup.spawn = no_more_processes
    sup.check()

    assert (
        world.lines[-1]
        == "beat could not be started ([Errno 11] Resource temporarily unavailable); trying again in 30s"
    )
    assert sup.children["beat"].restart_at == world.now + 30
    sup.spawn = world.spawn
    world.now += 30
    sup.check()
    assert world.lines[-1] == "started beat (pid 103) (restart 2)"
