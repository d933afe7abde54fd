"""What the browser tests share (onboarding pages, hosted checkout, 3-D Secure): Debian's Chromium
driven by Playwright (the ``chromium`` fixture, imported by the modules that use it) and a real
server (``tests/api/live.py``) run for one module's tests (``live_server``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.api.live import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    # Playwright's sync API keeps an event loop in this thread while it runs; our database calls
    # between browser steps (and in the server fixture's teardown) are plain synchronous ones.
    with pytest.MonkeyPatch.context() as patch, playwright_api.sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            _close_database_connections()


def _close_database_connections() -> None:
    """Close this process's connections while Playwright's loop still runs: the connection's
    ``close`` checks for a running event loop, and the test database is dropped at the end of the
    run only when no session is left on it."""
    from django.db import connections

    connections.close_all()


@contextmanager
def live_server(django_db_blocker: Any, env: dict[str, str]) -> Iterator[Server]:
    """A real server (with ``env`` added to its environment) for a module's browser tests,
    stopped afterwards; then the closed server's database sessions are waited for."""
    live = Server(env=env)
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()
        with django_db_blocker.unblock():
            wait_for_other_sessions_to_end()


def wait_for_other_sessions_to_end(timeout: float = 15) -> None:
    """PostgreSQL ends a closed client's backend a moment after the client exits; the test
    database is dropped at the end of the run and refuses while another session is on it."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, application_name, state, backend_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            others = cursor.fetchall()
        if not others:
            return
        time.sleep(0.2)
