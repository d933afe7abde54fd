from __future__ import annotations

import uuid

import pytest
from django_tenants.utils import tenant_context

from apps.core import durable
from apps.core.models import DurableTask
from apps.core.tasks import echo_schema
from tests.support import Worker, redis_client, wait_for

pytestmark = pytest.mark.worker


@pytest.fixture
def worker(committed):
    w = Worker()
    w.wait_ready()
    yield w
    w.stop()


def test_task_sent_in_tenant_a_runs_in_a_schema(worker, tenant_a, tenant_b):
    marker_a, marker_b = uuid.uuid4().hex, uuid.uuid4().hex

    with tenant_context(tenant_a):
        echo_schema.apply_async(args=(marker_a,), queue=worker.queue)
    with tenant_context(tenant_b):
        echo_schema.apply_async(args=(marker_b,), queue=worker.queue)

    client = redis_client()
    assert wait_for(lambda: client.get(f"mp:echo:{marker_a}")) == b"alpha"
    assert wait_for(lambda: client.get(f"mp:echo:{marker_b}")) == b"beta"


def test_readyz_is_ready_with_a_worker_and_names_celery_when_it_stops(committed, host_client):
    w = Worker()
    try:
        w.wait_ready()
        ready = host_client("alpha.localhost").get("/readyz")
        assert ready.status_code == 200, ready.json()
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "celery": "ok"}
        assert ready.json()["schema"] == "alpha"
    finally:
        w.stop()

    not_ready = host_client("localhost").get("/readyz")
    assert not_ready.status_code == 503
    body = not_ready.json()
    assert body["failed"] == ["celery"]
    assert body["checks"]["database"] == "ok"


def test_healthz_answers_on_public_tenant_and_unknown_hosts(db, host_client):
    for host in ("localhost", "alpha.localhost", "10.0.0.7"):
        assert host_client(host).get("/healthz").json() == {"status": "ok"}


def test_durable_task_runs_in_its_tenant_once(worker, tenant_a, settings):
    marker = uuid.uuid4().hex
    from django.db import transaction

    with tenant_context(tenant_a), transaction.atomic():
        first = durable.durable_enqueue(
            handler="apps.core.tasks.echo_schema", kwargs={"marker": marker}, idempotency_key=f"echo-{marker}"
        )
        again = durable.durable_enqueue(
            handler="apps.core.tasks.echo_schema", kwargs={"marker": marker}, idempotency_key=f"echo-{marker}"
        )
    assert first.pk == again.pk
    # the after-commit send goes to the default queue; the test worker listens on its own
    with tenant_context(tenant_a):
        durable.run_durable_task.apply_async(args=(str(first.pk),), queue=worker.queue)
        assert wait_for(lambda: redis_client().get(f"mp:echo:{marker}")) == b"alpha"
        assert wait_for(lambda: DurableTask.objects.get(pk=first.pk).state == "done")
        assert DurableTask.objects.get(pk=first.pk).attempts == 1


def test_sweeper_resends_work_whose_enqueue_was_lost(tenant_a, committed):
    from datetime import timedelta

    from django.utils import timezone

    marker = uuid.uuid4().hex
    with tenant_context(tenant_a):
        # A row committed but never sent (the process died between commit and enqueue).
        row = DurableTask.objects.create(
            handler="apps.core.tasks.echo_schema",
            kwargs={"marker": marker},
            idempotency_key=f"lost-{marker}",
            next_run_at=timezone.now() - timedelta(minutes=5),
        )
        with durable.durable_messages_held() as sent:
            assert durable.durable_sweep() >= 1
        assert str(row.pk) in sent
        # running it (as the re-sent task would) completes it; a second run is a no-op
        assert durable.durable_run(task_id=str(row.pk)) == "done"
        assert durable.durable_run(task_id=str(row.pk)) == "skipped"
        assert redis_client().get(f"mp:echo:{marker}") == b"alpha"
