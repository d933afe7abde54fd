"""Vendors' periodic work, run for every marketplace by the dispatcher: scheduled payouts, and
the reconcile job that finishes transfers, payouts and reversals left unfinished."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.core.jobs import register_tenant_job
from apps.vendors import funds


@shared_task(name="vendors.payouts_run", acks_late=True)
def payouts_run() -> int:
    return funds.payouts_run()


register_tenant_job("vendors.payouts_run", every=timedelta(hours=1))


@shared_task(name="vendors.funds_reconcile", acks_late=True)
def funds_reconcile() -> int:
    """Idempotent: queues the resolution of transfers, payouts and reversals left unfinished."""
    return funds.funds_reconcile()


register_tenant_job("vendors.funds_reconcile", every=timedelta(minutes=5))
