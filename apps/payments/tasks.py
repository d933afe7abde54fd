from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.core.jobs import register_tenant_job
from apps.payments.services import payments_reconcile


@shared_task(name="payments.reconcile")
def reconcile() -> int:
    """Idempotent: queues resolution of attempts stuck in pending/unknown."""
    return payments_reconcile()


register_tenant_job("payments.reconcile", every=timedelta(minutes=1))
