"""Liveness and readiness probes, served on every host."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from apps.core.worker_signals import alive_workers


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:
        return f"database: {exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def _check_redis_and_workers() -> tuple[str | None, str | None, list[str]]:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
    except Exception as exc:
        return f"redis: {exc.__class__.__name__}: {exc}", "celery: cannot check without Redis", []
    workers = alive_workers(client)
    return None, (None if workers else "celery: no worker has sent a heartbeat recently"), workers


def readyz(request):
    started = time.perf_counter()
    db_error = _check_database()
    redis_error, worker_error, workers = _check_redis_and_workers()
    checks = {
        "database": db_error or "ok",
        "redis": redis_error or "ok",
        "celery": worker_error or "ok",
    }
    failed = [name for name, value in checks.items() if value != "ok"]
    body = {
        "status": "ready" if not failed else "not_ready",
        "failed": failed,
        "checks": checks,
        "workers": workers,
        "schema": getattr(connection, "schema_name", None),
        "took_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if not failed else 503)
