"""A worker killed with SIGKILL mid-task leaves nothing stuck once the sweeper runs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django_tenants.utils import tenant_context

from apps.core import durable
from apps.core.models import DurableTask
from config.celery import app as celery_app
from tests.support import Worker, redis_client, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def test_sigkilled_worker_mid_task_is_recovered_by_the_sweeper(committed, tenant_a, settings):
    settings.DURABLE_TASK_STALE_AFTER = timedelta(seconds=0)
    first = Worker(env={"DURABLE_TASK_LEASE_SECONDS": "2"})
    first.wait_ready()
    marker = uuid.uuid4().hex
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = first.queue
    try:
        with tenant_context(tenant_a):
            task = durable.durable_enqueue(
                handler="tests.support.sleepy_echo",
                kwargs={"marker": marker, "seconds": 20},
                idempotency_key=f"sleepy:{marker}",
            )
            # The worker has picked it up and is in the middle of it...
            wait_for(lambda: DurableTask.objects.get(pk=task.pk).state == "running", timeout=30)
            first.kill()  # ...when the machine loses it: no ack, no cleanup, no result.
            assert DurableTask.objects.get(pk=task.pk).state == "running"

            second = Worker(queue=first.queue, env={"DURABLE_TASK_LEASE_SECONDS": "30"})
            second.wait_ready()
            try:
                # Speed the handler up for the retry (a crash recovery does not care how long it takes).
                DurableTask.objects.filter(pk=task.pk).update(kwargs={"marker": marker, "seconds": 0})
                wait_for(
                    lambda: (
                        durable.durable_sweep() >= 0 and DurableTask.objects.get(pk=task.pk).state == "done"
                    ),
                    timeout=60,
                    interval=1,
                )
            finally:
                second.stop()
        assert redis_client().get(f"mp:echo:{marker}") == b"alpha"
        with tenant_context(tenant_a):
            assert DurableTask.objects.get(pk=task.pk).attempts >= 2
    finally:
        celery_app.conf.task_default_queue = previous
