"""The Celery app. Built with tenant-schemas-celery's CeleryApp so every task runs in the
schema it was sent from (a plain Celery app would silently run everything in public)."""

from __future__ import annotations

import os

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
