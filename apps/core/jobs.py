"""Per-tenant periodic jobs. Beat fires one dispatcher in public; the dispatcher sends each
registered job to each marketplace's schema when its interval has passed.

Apps register at import time (in their ``tasks.py``)::

    register_tenant_job("ledger.seal", every=timedelta(minutes=1))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

_JOBS: dict[str, TenantJob] = {}


@dataclass(frozen=True)
class TenantJob:
    task_name: str
    every: timedelta


def register_tenant_job(task_name: str, *, every: timedelta) -> None:
    _JOBS[task_name] = TenantJob(task_name, every)


def registered_jobs() -> list[TenantJob]:
    return list(_JOBS.values())
