from __future__ import annotations

import logging
from datetime import timedelta

import redis
from celery import current_app, shared_task
from django.conf import settings
from django_tenants.utils import tenant_context

from apps.core import durable
from apps.core.jobs import register_tenant_job, registered_jobs
from apps.tenants.db import current_schema
from apps.tenants.selectors import marketplaces_active

log = logging.getLogger(__name__)


@shared_task(name="core.sweep_durable_tasks")
def sweep_durable_tasks() -> int:
    """Idempotent: re-sends due durable tasks of the current schema."""
    return durable.durable_sweep()


register_tenant_job("core.sweep_durable_tasks", every=timedelta(seconds=30))


@shared_task(name="core.sweep_durable_tasks_public")
def sweep_durable_tasks_public() -> int:
    """Idempotent: sweeps the public schema (marketplaces are swept through the dispatcher)."""
    return durable.durable_sweep()


@shared_task(name="core.dispatch_tenant_jobs")
def dispatch_tenant_jobs() -> int:
    """Idempotent: sends each registered job to each marketplace at most once per interval
    (a Redis SET NX with the interval as TTL is the guard, so two beats cannot double-send)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    sent = 0
    for tenant in marketplaces_active():
        for job in registered_jobs():
            guard = f"mp:job:{tenant.schema_name}:{job.task_name}"
            ttl = max(1, int(job.every.total_seconds()))
            if not client.set(guard, "1", nx=True, ex=ttl):
                continue
            with tenant_context(tenant):  # the task carries this schema in its headers
                current_app.send_task(job.task_name)
            sent += 1
    return sent


@shared_task(name="core.echo_schema")
def echo_schema(marker: str) -> str:
    """Idempotent: writes nothing but a Redis key naming the schema it ran in (diagnostics)."""
    redis.Redis.from_url(settings.REDIS_URL).set(f"mp:echo:{marker}", current_schema(), ex=600)
    return current_schema()
