"""Real-process chaos (issue 11): the platform's real processes are killed or restarted while a
bounded pool of clients takes payments, then, after the periodic jobs have run to quiescence, the
invariants are checked against the simulator's records (tests/reliability/real_process.py).

- ``kill -9`` of the web workers mid-request (gunicorn starts new ones), then of the whole server
  (a new one is started on the same port);
- ``kill -9`` of a Celery worker in the middle of a durable task that is calling the gateway, then a
  new worker and the sweeper;
- a restart (``pg_ctl restart -m fast``) of a throwaway PostgreSQL cluster during traffic;
- a crash and restart of a throwaway Redis (broker, breakers, rate limits) during traffic.

Clients retry a key with the same ``Idempotency-Key`` and body after a connection error or a 5xx
until they get another answer. Assertions are about the end state only, never about timings.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
import redis
from django.conf import settings
from django_tenants.utils import tenant_context

from apps.core import durable
from apps.core.models import DurableTask
from apps.payments.models import PaymentAttempt
from apps.payments.services import payment_intent_create
from apps.tenants.services import api_key_create
from config.celery import app as celery_app
from tests.reliability.real_process import (
    CeleryWorker,
    Report,
    ThrowawayPostgres,
    ThrowawayRedis,
    Traffic,
    WebServer,
    platform_env,
    provision,
    set_simulator_latency,
    settle_and_check,
    wait_at_most,
    wait_until,
)
from tests.support import database_url_for_tests, fresh_marketplace

pytestmark = [pytest.mark.chaos_process, pytest.mark.worker, pytest.mark.slow]

LATENCY = {"p50": 400, "p99": 600}  # long enough that a kill lands while requests are at the gateway


@pytest.fixture
def closing():
    """``closing(thing)`` registers a process or server; all are closed (killed) after the test,
    last registered first, whether it passed or not."""
    things: list = []
    yield things.append
    for thing in reversed(things):
        with contextlib.suppress(Exception):
            thing.close()


class PendingProbe:
    """Counts the marketplace's attempts whose gateway call is under way (committed ``pending``),
    over one autocommit connection of its own."""

    def __init__(self, database_url: str, schema: str):
        self.url, self.schema = database_url, schema
        self.conn: psycopg.Connection | None = None

    def count(self) -> int:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
            row = self.conn.execute(
                f'SELECT count(*) FROM "{self.schema}".payments_paymentattempt WHERE status = %s', ["pending"]
            ).fetchone()
            return int(row[0]) if row else 0
        except psycopg.Error:
            self.close()
            return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _answers(traffic: Traffic) -> dict[str, str | None]:
    return {key: result.payment for key, result in traffic.results.items()}


def _report(report: Report, traffic: Traffic | None, **observed) -> Report:
    if traffic is not None:
        report.data["clients"] = traffic.summary()
    report.data["observed"] = observed
    print(report.summary())
    return report


def _shared_db_marketplace(prefix: str):
    market = fresh_marketplace(prefix, simulator_latency_ms=None)
    with tenant_context(market):
        set_simulator_latency(LATENCY)
    _, api_key = api_key_create(tenant=market, name="chaos")
    return market, f"{market.schema_name}.localhost", api_key


def _drop_queue(redis_url: str, queue: str) -> None:
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(redis_url).delete(queue)


def _sometimes_unknown(index: int) -> str:
    """Every fourth payment's answer is lost after the charge (its resolution is a durable task)."""
    return "pm_sim_timeout_after_charge" if index % 4 == 3 else "pm_card_visa"


# --------------------------------------------------------------------------- web processes


def test_web_processes_killed_mid_request_charge_each_key_once(committed, closing):
    market, domain, api_key = _shared_db_marketplace("chw")
    queue = f"chaos-{uuid.uuid4().hex[:8]}"  # no worker: the settling runs what was left to one
    env = platform_env(
        database_url=database_url_for_tests(), redis_url=settings.REDIS_URL, queue=queue, domain=domain
    )
    probe = PendingProbe(database_url_for_tests(), market.schema_name)
    closing(probe)
    server = WebServer(env=env, workers=2)
    closing(server)
    server.wait_ready()
    traffic = Traffic(
        port=server.port,
        host=domain,
        api_key=api_key,
        clients=4,
        per_client=10,
        deadline=time.monotonic() + 60,
    ).start()

    # Every web worker is killed while a request is at the gateway; gunicorn starts new ones.
    wait_until(
        lambda: traffic.answered >= 4 and probe.count() > 0, timeout=30, what="requests at the gateway"
    )
    pending_at_first_kill = probe.count()
    killed_workers = server.kill_workers()
    # Later the whole server (arbiter and workers) dies; a new one is started on the same port.
    wait_until(
        lambda: traffic.answered >= 16 and probe.count() > 0, timeout=40, what="requests at the gateway"
    )
    pending_at_second_kill = probe.count()
    server.kill()
    server = WebServer(env=env, port=server.port, workers=2)
    closing(server)
    server.wait_ready()
    traffic.join()
    server.close()
    _drop_queue(settings.REDIS_URL, queue)

    report = _report(
        settle_and_check(env=env, schema=market.schema_name, keys=traffic.keys, answers=_answers(traffic)),
        traffic,
        killed_workers=len(killed_workers),
        pending_at_worker_kill=pending_at_first_kill,
        pending_at_server_kill=pending_at_second_kill,
    )
    assert report.violations() == []


# --------------------------------------------------------------------------- a Celery worker


def test_worker_killed_mid_task_leaves_each_payment_charged_once(committed, closing, settings):
    settings.DURABLE_TASK_STALE_AFTER = timedelta(seconds=0)  # our sweeps re-send at once
    market = fresh_marketplace("chk", simulator_latency_ms=0)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    env = platform_env(
        database_url=database_url_for_tests(),
        redis_url=settings.REDIS_URL,
        queue=queue,
        domain=f"{market.schema_name}.localhost",
        # The dead worker's lease on its task runs out after 3 s: the sweeper may send it again.
        extra={"DURABLE_TASK_LEASE_SECONDS": "3"},
    )
    first = CeleryWorker(env=env)
    closing(first)
    first.wait_ready()
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue  # this process's after-commit sends reach our workers
    try:
        with tenant_context(market):
            # Two payments whose answer is lost after the charge: a resolve task each (retrieve).
            unknown = [
                payment_intent_create(
                    amount=2000 + i,
                    currency="usd",
                    payment_method="pm_sim_timeout_after_charge",
                    confirm=True,
                )
                for i in range(2)
            ]
            # Three that do not fit the request's latency budget: a worker continues each at a
            # gateway that takes 3 s to answer, time enough to be killed in the middle.
            set_simulator_latency({"p50": 3000})
            settings.PAYMENT_LATENCY_BUDGET_MS = 0
            continued = [
                payment_intent_create(
                    amount=3000 + i, currency="usd", payment_method="pm_card_visa", confirm=True
                )
                for i in range(3)
            ]
            settings.PAYMENT_LATENCY_BUDGET_MS = 8000
            assert {p.status for p in unknown + continued} == {"processing"}

            def continuing_at_gateway():
                running = DurableTask.objects.filter(
                    handler="apps.payments.services.payment_continue", state="running"
                ).values_list("kwargs__intent_id", flat=True)
                return PaymentAttempt.objects.filter(intent_id__in=list(running), status="pending").first()

            at_gateway = wait_until(continuing_at_gateway, timeout=45, what="a continue task at the gateway")
            first.kill()
            killed_task_state = DurableTask.objects.get(kwargs__intent_id=at_gateway.intent_id).state

            second = CeleryWorker(env={**env, "DURABLE_TASK_LEASE_SECONDS": "300"})
            closing(second)
            second.wait_ready()
            set_simulator_latency({"p50": 0})  # recovery does not care how long the gateway takes

            def all_done() -> bool:
                durable.durable_sweep()  # what the periodic sweeper does
                return not DurableTask.objects.filter(state__in=("pending", "running")).exists()

            wait_until(all_done, timeout=60, interval=0.5, what="every durable task done")
            attempt_after_workers = PaymentAttempt.objects.get(pk=at_gateway.pk).status
            second.close()
    finally:
        celery_app.conf.task_default_queue = previous_queue
        _drop_queue(settings.REDIS_URL, queue)

    report = _report(
        settle_and_check(env=env, schema=market.schema_name, keys=[], answers={}),
        None,
        killed_attempt=at_gateway.id,
        killed_task_state=killed_task_state,
        killed_attempt_after_new_worker=attempt_after_workers,
    )
    assert report.violations() == []
    assert report.data["statuses"] == {"succeeded": 5}
    assert report.data["kept_charges"] == 5


# --------------------------------------------------------------------------- PostgreSQL restart


def test_postgres_restart_during_traffic_charges_each_key_once(closing):
    cluster = ThrowawayPostgres()
    closing(cluster)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    slug = "chpg" + uuid.uuid4().hex[:8]
    database_url = cluster.create_database("chaos")
    env = platform_env(
        database_url=database_url, redis_url=settings.REDIS_URL, queue=queue, domain=f"{slug}.localhost"
    )
    made = provision(env=env, slug=slug, latency_ms=LATENCY)
    probe = PendingProbe(database_url, made["schema"])
    closing(probe)
    server = WebServer(env=env, workers=2)
    closing(server)
    worker = CeleryWorker(env=env)
    closing(worker)
    server.wait_ready()
    worker.wait_ready()
    traffic = Traffic(
        port=server.port,
        host=made["domain"],
        api_key=made["api_key"],
        clients=4,
        per_client=12,
        deadline=time.monotonic() + 60,
        methods=_sometimes_unknown,
    ).start()

    wait_until(
        lambda: traffic.answered >= 8 and probe.count() > 0, timeout=30, what="requests at the gateway"
    )
    pending_at_restart = probe.count()
    probe.close()
    cluster.restart()
    traffic.join()
    server.close()
    worker.close()
    _drop_queue(settings.REDIS_URL, queue)

    report = _report(
        settle_and_check(env=env, schema=made["schema"], keys=traffic.keys, answers=_answers(traffic)),
        traffic,
        pending_at_restart=pending_at_restart,
    )
    assert report.violations() == []


# --------------------------------------------------------------------------- Redis restart


def test_redis_restart_during_traffic_charges_each_key_once(committed, closing):
    broker = ThrowawayRedis()
    closing(broker)
    market, domain, api_key = _shared_db_marketplace("chr")
    env = platform_env(
        database_url=database_url_for_tests(), redis_url=broker.url, queue="chaos", domain=domain
    )
    probe = PendingProbe(database_url_for_tests(), market.schema_name)
    closing(probe)
    server = WebServer(env=env, workers=2)
    closing(server)
    worker = CeleryWorker(env=env)
    closing(worker)
    server.wait_ready()
    worker.wait_ready()
    traffic = Traffic(
        port=server.port,
        host=domain,
        api_key=api_key,
        clients=4,
        per_client=12,
        deadline=time.monotonic() + 60,
        methods=_sometimes_unknown,
    ).start()

    answered_while_down = []
    for answered in (8, 24):
        wait_until(
            lambda n=answered: traffic.answered >= n and probe.count() > 0,
            timeout=30,
            what="requests at the gateway",
        )
        # Redis crashes with requests at the gateway and stays down while four more keys are
        # answered (or 10 s), then starts again empty: queued tasks, breakers and buckets are gone.
        broker.crash()
        before = traffic.answered
        wait_at_most(lambda n=before: traffic.answered >= n + 4, seconds=10)
        answered_while_down.append(traffic.answered - before)
        broker.start()
    traffic.join()
    server.close()
    worker.close()

    report = _report(
        settle_and_check(env=env, schema=market.schema_name, keys=traffic.keys, answers=_answers(traffic)),
        traffic,
        answered_while_redis_down=answered_while_down,
    )
    assert report.violations() == []
