from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.api.idempotency import idempotency_cleanup
from apps.core.jobs import register_tenant_job


@shared_task(name="api.idempotency_cleanup")
def idempotency_cleanup_task() -> int:
    """Idempotent: deletes this schema's idempotency records past their retention."""
    return idempotency_cleanup()


register_tenant_job("api.idempotency_cleanup", every=timedelta(hours=1))
