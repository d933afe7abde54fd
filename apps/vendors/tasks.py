"""Vendors' periodic work: scheduled payouts, run for every marketplace by the dispatcher."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.core.jobs import register_tenant_job


@shared_task(name="vendors.payouts_run", acks_late=True)
def payouts_run() -> int:
    from apps.vendors.funds import payouts_run as run

    return run()


register_tenant_job("vendors.payouts_run", every=timedelta(hours=1))
