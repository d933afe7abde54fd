"""The web server `make run` starts holds a bounded number of PostgreSQL connections, however many
clients it serves at once (it used to hold one per client thread: ~120 clients exhausted a
100-connection server and got 500s)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
from django.conf import settings

from config.connections import parse_database_url
from tests.api.live import Server, free_port, live_marketplace_create
from tests.support import BASE, database_url_for_tests

pytestmark = pytest.mark.slow

CLIENTS = 150
POOL_MAX_SIZE = 4


class RunServer(Server):
    """`make run`'s web server (Django's threaded runserver: one thread per client connection)."""

    def __init__(self, env: dict):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=BASE,
            env={**os.environ, "REDIS_URL": settings.REDIS_URL, "DJANGO_DEBUG": "1", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def _with_query(url: str, query: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=query))


def test_a_burst_of_clients_never_takes_more_connections_than_the_pool_allows(
    django_db_setup, django_db_blocker
):
    # given the web server on the test database, its connections named so they can be counted
    app_name = f"bound-{uuid.uuid4().hex[:8]}"
    server = RunServer(
        env={
            "DATABASE_URL": _with_query(database_url_for_tests(), f"application_name={app_name}"),
            "DATABASE_POOL_MAX_SIZE": str(POOL_MAX_SIZE),
            "DATABASE_POOL_TIMEOUT": "60",  # the burst queues for connections; none may give up
            "API_RATE_LIMIT_PER_SECOND": "10000",
            "API_RATE_LIMIT_BURST": "10000",
            "LOG_LEVEL": "WARNING",
        }
    )
    try:
        with django_db_blocker.unblock():
            market = live_marketplace_create(server)
        server.wait_ready()
        db = parse_database_url(database_url_for_tests())
        peak = {"connections": 0, "samples": 0}
        done = threading.Event()

        def sample() -> None:
            with psycopg.connect(
                host=db.host,
                port=db.port,
                user=db.user,
                password=db.password,
                dbname=db.name,
                autocommit=True,
            ) as conn:
                while True:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                        [db.name, app_name],
                    ).fetchone()
                    assert row is not None
                    peak["connections"] = max(peak["connections"], row[0])
                    peak["samples"] += 1
                    if done.wait(0.01):
                        return

        statuses: list[int] = []
        lock = threading.Lock()
        barrier = threading.Barrier(CLIENTS)

        def client() -> None:
            barrier.wait(timeout=60)
            try:
                status = requests.get(
                    market.url("/api/v1/payments"), headers=market.headers(), timeout=60
                ).status_code
            except requests.RequestException as exc:
                status = -1
                print(f"client error: {exc}")
            with lock:
                statuses.append(status)

        # when CLIENTS clients call an endpoint that reads the database, all at once
        sampler = threading.Thread(target=sample)
        sampler.start()
        clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=90)
        done.set()
        sampler.join(timeout=10)

        # then every client got its answer and the server never held more than its pool
        assert sorted(set(statuses)) == [200]
        assert len(statuses) == CLIENTS
        assert peak["samples"] > 1
        assert 1 <= peak["connections"] <= POOL_MAX_SIZE
    finally:
        server.stop()
