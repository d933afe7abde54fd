"""Checkout's periodic work, run for every marketplace by the dispatcher."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.checkout import services
from apps.core.jobs import register_tenant_job


@shared_task(name="checkout.sessions_sweep", acks_late=True)
def checkout_sessions_sweep() -> dict:
    """Idempotent: complete paid sessions, expire the ones past their time."""
    return services.checkout_sessions_sweep()


register_tenant_job("checkout.sessions_sweep", every=timedelta(minutes=1))
