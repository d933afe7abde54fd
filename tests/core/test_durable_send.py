"""Work committed while the broker cannot be reached is kept for the sweeper, not turned into an error."""

from __future__ import annotations

import kombu.exceptions
from django.utils import timezone

from apps.core.durable import durable_enqueue, run_durable_task
from apps.core.models import DurableTask


def test_a_broker_that_cannot_be_reached_after_commit_leaves_the_task_to_the_sweeper(
    in_tenant_a, django_capture_on_commit_callbacks, monkeypatch
):
    sends = []

    def broker_down(*args, **kwargs):
        # What kombu raises when Redis is down (seen by tests/reliability's Redis restart).
        sends.append(kwargs)
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(run_durable_task, "apply_async", broker_down)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        task = durable_enqueue(
            handler="tests.support.sleepy_echo",
            kwargs={"marker": "broker-down", "seconds": 0},
            idempotency_key="broker-down:1",
        )

    assert len(callbacks) == 1
    assert sends == [{"args": (str(task.pk),), "countdown": 0.0}]
    stored = DurableTask.objects.get(pk=task.pk)
    assert stored.state == DurableTask.State.PENDING
    assert stored.next_run_at <= timezone.now()  # due: the next sweep sends it
