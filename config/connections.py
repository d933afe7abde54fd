"""From the PostgreSQL and Redis URLs to settings: parsing, Django's ``DATABASES`` entry (with
psycopg's pool), Celery's broker URL. Pure: no probe, no connection, no server started (that is
``config.discovery``, run by the commands before the settings load).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

DEFAULT_DB_NAME = "marketplace"
# What the settings use when DATABASE_URL / REDIS_URL are not set (the user is PGUSER, else
# postgres). `make run`, `make test` and `manage.py` set both before the settings load (discovery).
DEFAULT_DATABASE_URL = f"postgresql://127.0.0.1:5432/{DEFAULT_DB_NAME}"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ServiceError(RuntimeError):
    """A configured or required service cannot be used; the message is one readable line."""


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


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


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


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


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells a unix socket ``redis+socket://``; redis-py spells it ``unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url
