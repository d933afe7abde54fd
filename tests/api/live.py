"""A real HTTP server (gunicorn) on the test database, and a committed marketplace to call it on.

Python's resolver does not resolve ``*.localhost``, so requests go to 127.0.0.1 with the
marketplace's domain in the ``Host`` header."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import requests
from django.conf import settings

from tests.support import BASE, database_url_for_tests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, env: dict | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_DEBUG": "1",
            "LOG_LEVEL": "WARNING",
            "PORT": str(self.port),  # what links to the marketplace's pages are built with (DEBUG)
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--log-level",
                "warning",
            ],
            cwd=BASE,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if requests.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class LiveMarketplace:
    tenant: object
    host: str
    raw_key: str
    server: Server

    def headers(self, **extra: str) -> dict:
        return {"Host": self.host, "Authorization": f"Bearer {self.raw_key}", **extra}

    def url(self, path: str) -> str:
        return self.server.base_url + path


def live_marketplace_create(server: Server) -> LiveMarketplace:
    """A fresh committed marketplace with a full-access key (call with database access unblocked)."""
    from apps.tenants.services import api_key_create, marketplace_create

    slug = f"live{uuid.uuid4().hex[:10]}"
    made = marketplace_create(
        slug=slug, name=f"Live {slug}", domain=f"{slug}.localhost", owner_email=f"ops@{slug}.test"
    )
    _, raw = api_key_create(tenant=made.marketplace, name="live tests")
    return LiveMarketplace(made.marketplace, made.domain.domain, raw, server)
