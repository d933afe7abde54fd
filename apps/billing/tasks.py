"""Billing's periodic work: renewals and dunning, run for every marketplace by the dispatcher."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.billing import collection
from apps.core.jobs import register_tenant_job


@shared_task(name="billing.run", acks_late=True)
def billing_run() -> dict:
    """Idempotent and safe concurrently: renew due subscriptions and make due invoice attempts."""
    return collection.billing_run().as_dict()


register_tenant_job("billing.run", every=timedelta(minutes=1))
