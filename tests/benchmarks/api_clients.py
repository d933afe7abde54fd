"""The HTTP server and the client processes of the API benchmark (tests/benchmarks/test_api.py).

``GunicornServer`` runs ``config.wsgi`` under gunicorn in its own process group, as a deployment
would (DEBUG off), against the test database. ``client_main`` is a ``ProcessPool`` target
(tests/benchmarks/pool.py): each spawned process runs its share of the phase's clients as threads,
every thread one keep-alive ``http.client`` connection to 127.0.0.1 sending one request after
another (closed-loop) until the phase's deadline or its request cap. Nothing here imports Django:
the clients are plain HTTP clients.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent.parent

ACCOUNT_PATH = "/api/v1/account"
PAYMENTS_PATH = "/api/v1/payments"
PAYMENT_BODY = json.dumps(
    {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
).encode()


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GunicornServer:
    """``gunicorn config.wsgi:application`` on 127.0.0.1, stdout and stderr into a temporary file."""

    def __init__(self, *, env: dict[str, str], workers: int, threads: int):
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.worker_class = "gthread" if threads > 1 else "sync"
        self.log = tempfile.NamedTemporaryFile(prefix="api-bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        self.args = [
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--worker-class",
            self.worker_class,
            "--threads",
            str(threads),
            "--access-logfile",
            "-",  # as docker/Dockerfile runs it
            "--graceful-timeout",
            "5",
            "--no-control-socket",
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *self.args],
            cwd=BASE,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() takes the workers too
        )

    def describe(self) -> str:
        return f"gunicorn {' '.join(self.args)}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll ``/healthz`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise TimeoutError(f"gunicorn did not answer /healthz in {timeout}s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes (arbiter and workers) so far."""
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            if int(fields[2]) == self.proc.pid:  # process group
                total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group (graceful), SIGKILL it if it lingers; remove the log."""
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            # Whatever lingers (the arbiter, or workers it left behind holding database
            # connections) is killed with its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        finally:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)


# --------------------------------------------------------------------------- clients


def client_main(index: int, procs: int, port: int, host: str, key: str, inbox, outbox) -> None:
    try:
        _client(index, procs, port, host, key, inbox, outbox)
    except BaseException:
        outbox.put(("crashed", index, traceback.format_exc()))
        raise


def _client(index, procs, port, host, key, inbox, outbox):
    outbox.put(("ready", index, None))
    while True:
        cmd = inbox.get()
        if cmd["kind"] == "stop":
            break
        clients = int(cmd["clients"])
        share = clients // procs + (1 if index < clients % procs else 0)
        results: list[dict] = [{} for _ in range(share)]
        threads = [
            threading.Thread(
                target=_connection_loop,
                args=(port, host, key, cmd, results[t]),
                name=f"client-{index}-{t}",
                daemon=True,
            )
            for t in range(share)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies: list[float] = []
        errors: dict[str, int] = {}
        end = cmd["start"]
        for r in results:
            latencies.extend(r.get("latencies", ()))
            for k, v in r.get("errors", {}).items():
                errors[k] = errors.get(k, 0) + v
            end = max(end, r.get("end", end))
        outbox.put(("done", index, {"latencies": latencies, "errors": errors, "end": end}))


def _connection_loop(port: int, host: str, key: str, cmd: dict, out: dict) -> None:
    """One client: a keep-alive connection, one request at a time, until the deadline or the cap.

    Latencies are recorded for answers that are right (200 account; 201 with ``status:
    succeeded``); anything else is counted in ``errors`` under a short description, which starts
    with the HTTP status when there was one ("201 status=failed", "429 rate_limit_error")."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    out.update(latencies=latencies, errors=errors, end=cmd["start"])
    try:
        payments = cmd["mode"] == "payments"
        headers = {"Host": host, "Authorization": f"Bearer {key}", "Accept": "application/json"}
        if payments:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        delay = cmd["start"] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        deadline, cap = cmd["deadline"], int(cmd["max_requests"])
        sent = 0
        now = time.monotonic()
        while now < deadline and sent < cap:
            sent += 1
            try:
                if payments:
                    # A unique key per request, as a real storefront sends.
                    headers["Idempotency-Key"] = "bench-" + uuid.uuid4().hex
                    conn.request("POST", PAYMENTS_PATH, body=PAYMENT_BODY, headers=headers)
                else:
                    conn.request("GET", ACCOUNT_PATH, headers=headers)
                response = conn.getresponse()
                body = response.read()
                problem = _check(payments, response.status, body)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()  # the next request opens a new connection
                problem = f"{type(exc).__name__}: {str(exc)[:120]}"
            end = time.monotonic()
            if problem is None:
                latencies.append(end - now)
            else:
                errors[problem] = errors.get(problem, 0) + 1
            now = end
        out["end"] = now
        conn.close()
    except BaseException as exc:  # a thread's crash must still be reported, not hang the phase
        errors[f"client crashed: {type(exc).__name__}: {str(exc)[:120]}"] = 1
        out["end"] = time.monotonic()


def _check(payments: bool, status: int, body: bytes) -> str | None:
    expected = 201 if payments else 200
    try:
        data = json.loads(body)
    except ValueError:
        return f"{status} unparsable body"
    if status != expected:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        return f"{status} {error.get('type', '')} {error.get('code', '')}".rstrip()
    if payments:
        if data.get("status") != "succeeded" or not str(data.get("id", "")).startswith("pay_"):
            return f"{status} status={data.get('status')}"
    elif data.get("object") != "account":
        return f"{status} object={data.get('object')}"
    return None
