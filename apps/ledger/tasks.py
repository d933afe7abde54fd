from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from apps.core.jobs import register_tenant_job
from apps.ledger.integrity import ledger_seal


@shared_task(name="ledger.seal")
def seal() -> int:
    """Idempotent: seals the current tenant's finished events (an advisory lock serialises sealers)."""
    return ledger_seal().events


register_tenant_job("ledger.seal", every=timedelta(minutes=1))
