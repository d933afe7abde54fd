"""The Celery app. Built with tenant-schemas-celery's CeleryApp so every task runs in the
schema it was sent from (a plain Celery app would silently run everything in public)."""

from __future__ import annotations

import os

from celery.signals import worker_process_init
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = CeleryApp("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "tenant-dispatcher": {
        "task": "core.dispatch_tenant_jobs",
        "schedule": 15.0,
    },
    "durable-task-sweeper": {
        "task": "core.sweep_durable_tasks_public",
        "schedule": 30.0,
    },
}

import apps.core.worker_signals  # noqa: E402,F401  (heartbeat so /readyz can see workers)

# Pools a prefork child inherited from the worker's main process: kept referenced, never used.
_inherited_connection_pools: list = []


@worker_process_init.connect
def connection_pools_forget_inherited(**kwargs) -> None:
    """Each worker child builds its own connection pool (at most DATABASE_POOL_MAX_SIZE connections).

    A pool the main process opened before forking holds the parent's sessions and threads that do
    not exist in the child: using it would interleave two processes on one socket, and closing or
    freeing it would end the parent's sessions (libpq says goodbye on the shared socket). So the child
    drops it from Django's registry and keeps a reference so it is never garbage-collected.
    """
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools: dict = DatabaseWrapper._connection_pools  # type: ignore[attr-defined]  # Django's registry
    _inherited_connection_pools.extend(pools.values())
    pools.clear()
