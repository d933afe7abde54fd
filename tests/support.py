"""Helpers for tests that run real processes (Celery workers) against the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from config.connections import with_database

BASE = Path(__file__).resolve().parent.parent


def database_url_for_tests() -> str:
    return with_database(settings.DATABASE_URL, connection.settings_dict["NAME"])


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


class Worker:
    """A real ``celery worker`` process on its own queue, against the test database."""

    def __init__(self, queue: str | None = None, env: dict | None = None):
        self.queue = queue or f"test-{uuid.uuid4().hex[:8]}"
        self.hostname = f"{self.queue}@pytest"
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_QUEUE": self.queue,
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                self.queue,
                "-n",
                self.hostname,
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "-l",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=BASE,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from apps.core.worker_signals import KEY_PREFIX

        client = redis_client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.exists(KEY_PREFIX + self.hostname):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}")
            time.sleep(0.2)
        raise TimeoutError("worker did not become ready")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_for(predicate, timeout: float = 30, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def sleepy_echo(*, marker: str, seconds: float) -> None:
    """A durable-task handler for tests: sleeps, then writes a Redis key naming its schema."""
    from apps.tenants.db import current_schema

    time.sleep(seconds)
    redis_client().set(f"mp:echo:{marker}", current_schema(), ex=600)


@contextlib.contextmanager
def default_queue_worker(**kwargs):
    """A ready worker whose queue is the default one, so after-commit sends reach it."""
    from config.celery import app as celery_app

    worker = Worker(**kwargs)
    worker.wait_ready()
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = worker.queue
    try:
        yield worker
    finally:
        celery_app.conf.task_default_queue = previous
        worker.stop()


def fresh_marketplace(prefix: str, *, simulator_latency_ms: int | None = 0):
    """A new marketplace, committed (for real workers and subprocesses): slug ``<prefix><random>``
    on ``<slug>.localhost``, its simulator gateways answering in ``simulator_latency_ms`` (None:
    left as provisioned) with their breakers reset."""
    from django_tenants.utils import tenant_context

    from apps.payments.breaker import CircuitBreaker
    from apps.payments.models import GatewayAccount
    from apps.tenants.services import marketplace_create

    slug = prefix + uuid.uuid4().hex[:10]
    tenant = marketplace_create(
        slug=slug, name=slug, domain=f"{slug}.localhost", owner_email=f"owner@{slug}.test"
    ).marketplace
    if simulator_latency_ms is not None:
        with tenant_context(tenant):
            GatewayAccount.objects.filter(kind="simulator").update(
                settings={"latency_ms": {"p50": simulator_latency_ms}}
            )
            for name in ("primary", "secondary"):
                CircuitBreaker(name).reset()
    return tenant


def run_durable_tasks(*, handler: str | None = None, rounds: int = 10) -> int:
    """What a worker does, in this process: run every due durable task (of ``handler`` only, when
    given), again for the tasks those schedule, until none is due. Returns how many ran."""
    from django.utils import timezone

    from apps.core.durable import durable_run
    from apps.core.models import DurableTask

    ran = 0
    for _ in range(rounds):
        due = DurableTask.objects.filter(state=DurableTask.State.PENDING, next_run_at__lte=timezone.now())
        if handler:
            due = due.filter(handler=handler)
        ids = list(due.values_list("pk", flat=True))
        if not ids:
            break
        for pk in ids:
            durable_run(task_id=str(pk))
            ran += 1
    return ran
