from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.core.jobs import register_tenant_job
from apps.payments.services import payments_authentication_expire, payments_reconcile


@shared_task(name="payments.reconcile")
def reconcile() -> int:
    """Idempotent: queues resolution of attempts stuck in pending/unknown."""
    return payments_reconcile()


register_tenant_job("payments.reconcile", every=timedelta(minutes=1))


@shared_task(name="payments.authentication_expire")
def authentication_expire() -> int:
    """Idempotent: closes authentications (3-D Secure) left unfinished past their expiry."""
    return payments_authentication_expire()


register_tenant_job("payments.authentication_expire", every=timedelta(minutes=1))
