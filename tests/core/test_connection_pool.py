"""The PostgreSQL connection pool (psycopg's, through Django): bounded, on the right database, and
a pooled connection never carries one marketplace's schema into another's request."""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Iterator

import pytest
from django.db import connection
from django_tenants.postgresql_backend.base import DatabaseWrapper

from config import connections


def test_the_settings_give_every_process_a_bounded_pool():
    # given the settings the suite runs with (the same as `make run`'s unless overridden)
    from django.conf import settings

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]

    # then
    assert pool["max_size"] == settings.DATABASE_POOL_MAX_SIZE == 10
    assert pool["min_size"] == 1
    assert pool["timeout"] == 10.0
    assert "reset" not in pool  # see config/connections.py: it would run in a pool thread
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0


def test_a_pool_size_of_zero_turns_the_pool_off():
    entry = connections.django_database(
        "postgresql://u@127.0.0.1:5432/shop",
        pool_max_size=0,
        pool_min_size=1,
        pool_timeout=10,
        conn_max_age=60,
    )

    assert "pool" not in entry["OPTIONS"]
    assert entry["CONN_MAX_AGE"] == 60


def test_min_size_never_exceeds_max_size():
    entry = connections.django_database(
        "postgresql://u@127.0.0.1:5432/shop",
        pool_max_size=2,
        pool_min_size=5,
        pool_timeout=3,
        conn_max_age=60,
    )

    assert (entry["OPTIONS"]["pool"]["min_size"], entry["OPTIONS"]["pool"]["max_size"]) == (2, 2)
    assert entry["CONN_MAX_AGE"] == 0


def test_the_pool_connects_to_the_test_database(committed):
    # The pool keeps the connection arguments it was built with: built before pytest-django renamed
    # the database, it would send the suite to the development database.
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()

    assert connection.pool is not None  # type: ignore[attr-defined]
    assert name == connection.settings_dict["NAME"] == connection.settings_dict["TEST"]["NAME"]


@pytest.fixture
def pool_of_one(committed) -> Iterator[str]:
    """An alias whose wrappers share one pool of a single connection (to the test database)."""
    alias = "pool_of_one"
    yield alias
    if alias in DatabaseWrapper._connection_pools:
        DatabaseWrapper._connection_pools.pop(alias).close()


def _wrapper(alias: str) -> DatabaseWrapper:
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict["OPTIONS"]["pool"] = {**settings_dict["OPTIONS"]["pool"], "min_size": 1, "max_size": 1}
    return DatabaseWrapper(settings_dict, alias=alias)


def test_two_marketplaces_alternating_on_one_pooled_connection_never_see_each_others_rows(
    pool_of_one, tenant_a, tenant_b
):
    # given two threads, each serving one marketplace's requests, sharing a pool of ONE connection,
    # taking turns: every request runs on the session the other marketplace's request just left
    rounds = 25
    turn = threading.Condition()
    state = {"next": "alpha"}
    seen: dict[str, list[tuple]] = {"alpha": [], "beta": []}
    errors: list[BaseException] = []

    def serve(tenant, other: str) -> None:
        name = tenant.schema_name
        wrapper = _wrapper(pool_of_one)
        # Chosen once: the thread stays in its schema across requests (a loop inside tenant_context,
        # a worker child), so only the pool's and django-tenants' own bookkeeping keep it right.
        wrapper.set_tenant(tenant)
        try:
            for _ in range(rounds):
                with turn:
                    turn.wait_for(lambda: state["next"] == name)
                    # one request: it reads, then ends
                    with wrapper.cursor() as cursor:
                        cursor.execute(
                            "SELECT pg_backend_pid(), current_schema(), "
                            "(SELECT string_agg(email, ',' ORDER BY email) FROM auth_user)"
                        )
                        seen[name].append(cursor.fetchone())
                    wrapper.close()  # request_finished: the connection goes back to the pool
                    state["next"] = other
                    turn.notify_all()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            with turn:
                state["next"] = other
                turn.notify_all()

    threads = [
        threading.Thread(target=serve, args=(tenant_a, "beta")),
        threading.Thread(target=serve, args=(tenant_b, "alpha")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then both ran every round, on one and the same server session, each only in its own schema
    assert errors == []
    pids = {row[0] for rows in seen.values() for row in rows}
    assert len(pids) == 1
    assert [row[1:] for row in seen["alpha"]] == [("alpha", "ops@alpha.test")] * rounds
    assert [row[1:] for row in seen["beta"]] == [("beta", "ops@beta.test")] * rounds


def test_a_public_host_request_after_a_marketplace_request_runs_in_public(pool_of_one, tenant_a):
    # given a marketplace's request that ran on the only pooled connection and gave it back
    first = _wrapper(pool_of_one)
    first.set_tenant(tenant_a)
    with first.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_schema()")
        pid, schema = cursor.fetchone()
    first.close()
    assert schema == "alpha"

    # when the next request, on the platform's public host, takes that connection
    second = _wrapper(pool_of_one)
    second.set_schema_to_public()
    with second.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), current_setting('search_path'), "
            "(SELECT count(*) FROM auth_user WHERE email = 'ops@alpha.test')"
        )
        row = cursor.fetchone()
    second.close()

    # then it is the same session, in public only, where alpha's operator does not exist
    assert row == (pid, "public", 0)


def test_a_forked_child_takes_its_own_connections_and_leaves_the_parents_alone(pool_of_one):
    # given the parent's pool (of one) holding an idle connection: django-tenants' multiprocessing
    # migrations and Celery's prefork pool fork with the pool open
    def backend_pid() -> int:
        wrapper = _wrapper(pool_of_one)
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                return cursor.fetchone()[0]
        finally:
            wrapper.close()

    parent_pid = backend_pid()
    read_end, write_end = os.pipe()

    # when the process forks and the child uses the database
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.write(write_end, str(backend_pid()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_pid = int(pipe.read() or 0)
    _, status = os.waitpid(child, 0)

    # then the child had a session of its own, and the parent's pooled session still works
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_pid not in (0, parent_pid)
    assert backend_pid() == parent_pid
