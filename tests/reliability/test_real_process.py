"""Real-process chaos (issue 11): the platform's real processes are killed or restarted while a
bounded pool of clients takes payments, then, after the periodic jobs have run to quiescence, the
invariants are checked against the simulator's records (tests/reliability/real_process.py).

- ``kill -9`` of the web workers mid-request (gunicorn starts new ones), then of the whole server
  (a new one is started on the same port);
- ``kill -9`` of a Celery worker in the middle of a durable task that is calling the gateway, then
  the sweeper sends the work to another worker;
- a restart (``pg_ctl restart -m fast``) of a throwaway PostgreSQL cluster during traffic;
- a crash of a throwaway Redis (broker, breakers, rate limits) during traffic, and its restart.

Clients retry a key with the same ``Idempotency-Key`` and body after a connection error or a 5xx
until they get another answer. Assertions are about the end state only, never about timings; what
each run saw (answers, retries, kills) is printed with the report.
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
from apps.payments.services import payment_intent_create, payment_refund
from apps.tenants.services import api_key_create
from config.celery import app as celery_app
from tests.reliability.real_process import (
    CeleryWorker,
    Laps,
    Report,
    ThrowawayPostgres,
    ThrowawayRedis,
    Traffic,
    WebServer,
    platform_env,
    postgres_binaries,
    postgres_os_user,
    provision,
    redis_binary,
    set_simulator_latency,
    settle_and_check,
    wait_at_most,
    wait_until,
)
from tests.support import database_url_for_tests, fresh_marketplace

pytestmark = [pytest.mark.chaos_process, pytest.mark.worker, pytest.mark.slow]

LATENCY = {"p50": 300, "p99": 450}  # most of a request is the gateway call: a kill lands there
CLIENTS = 4


@pytest.fixture
def closing():
    """``closing(thing)`` registers a process, server or connection; all are closed (processes
    killed with their groups) after the test, last registered first, whether it passed or not."""
    things: list = []
    yield things.append
    for thing in reversed(things):
        with contextlib.suppress(Exception):
            thing.close()


class PendingProbe:
    """Reads the marketplace's progress over one autocommit connection of its own (reopened after
    a database restart): attempts whose gateway call is under way, durable tasks still open."""

    def __init__(self, database_url: str, schema: str):
        self.url, self.schema = database_url, schema
        self.conn: psycopg.Connection | None = None

    def _count(self, table: str, column: str, values: list[str]) -> int:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
            marks = ", ".join(["%s"] * len(values))
            row = self.conn.execute(
                f'SELECT count(*) FROM "{self.schema}".{table} WHERE {column} IN ({marks})', values
            ).fetchone()
            return int(row[0]) if row else 0
        except psycopg.Error:
            self.close()
            return -1

    def pending(self) -> int:
        """Attempts committed ``pending``: their gateway call is under way."""
        return self._count("payments_paymentattempt", "status", ["pending"])

    def open_tasks(self) -> int:
        """Durable tasks still pending or running: work the settling will have to pick up."""
        return self._count("core_durabletask", "state", ["pending", "running"])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _boot(env: dict, closing, laps: Laps) -> tuple[WebServer, CeleryWorker]:
    """A web server (two gunicorn workers) and a Celery worker, both ready, closed after the test."""
    server = WebServer(env=env, workers=2)
    closing(server)
    worker = CeleryWorker(env=env)
    closing(worker)
    server.wait_ready()
    worker.wait_ready()
    laps.lap("boot")
    return server, worker


def _check(report: Report, traffic: Traffic | None, laps: Laps, **observed) -> Report:
    """Print what the run saw and enforce every invariant."""
    if traffic is not None:
        report.data["clients"] = traffic.summary()
    laps.lap("settle_and_check")
    report.data["observed"] = {**observed, "seconds": laps.as_dict()}
    print(report.summary())
    assert report.violations() == []
    return report


def _merged(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for what, n in count.items():
            total[what] = total.get(what, 0) + n
    return total


def _answers(traffic: Traffic) -> dict[str, str | None]:
    return {key: result.payment for key, result in traffic.results.items()}


def _shared_db_marketplace(prefix: str):
    market = fresh_marketplace(prefix, simulator_latency_ms=None)
    with tenant_context(market):
        set_simulator_latency(LATENCY)
    _, api_key = api_key_create(tenant=market, name="chaos")
    return market, f"{market.schema_name}.localhost", api_key


def _drop_queues(redis_url: str, *queues: str) -> None:
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(redis_url).delete(*queues)


def _sometimes_unknown(index: int) -> str:
    """Every fourth payment's answer is lost after the charge (its resolution is a durable task)."""
    return "pm_sim_timeout_after_charge" if index % 4 == 3 else "pm_card_visa"


# --------------------------------------------------------------------------- web processes


def test_web_processes_killed_mid_request_charge_each_key_once(committed, closing):
    laps = Laps()
    market, domain, api_key = _shared_db_marketplace("chw")
    queue = f"chaos-{uuid.uuid4().hex[:8]}"  # no worker: the settling runs what was left to one
    env = platform_env(
        database_url=database_url_for_tests(), redis_url=settings.REDIS_URL, queue=queue, domain=domain
    )
    probe = PendingProbe(database_url_for_tests(), market.schema_name)
    closing(probe)
    laps.lap("setup")
    server = WebServer(env=env, workers=2)
    closing(server)
    server.wait_ready()
    laps.lap("boot")
    traffic = Traffic(
        port=server.port,
        host=domain,
        api_key=api_key,
        clients=CLIENTS,
        per_client=8,
        deadline=time.monotonic() + 120,
    ).start()

    # Every web worker is killed while requests are at the gateway; gunicorn starts new ones.
    wait_until(
        lambda: traffic.answered >= 4 and probe.pending() > 0, timeout=90, what="requests at the gateway"
    )
    pending_at_worker_kill = probe.pending()
    killed_workers = server.kill_workers()
    # Later the whole server (arbiter and workers) dies; a new one is started on the same port.
    wait_until(
        lambda: traffic.answered >= 14 and probe.pending() > 0, timeout=90, what="requests at the gateway"
    )
    pending_at_server_kill = probe.pending()
    server.kill()
    server_errors = server.errors()
    server = WebServer(env=env, port=server.port, workers=2)
    closing(server)
    server.wait_ready()
    traffic.join()
    laps.lap("traffic")
    server.close()
    open_tasks = probe.open_tasks()
    _drop_queues(settings.REDIS_URL, queue)

    _check(
        settle_and_check(env=env, schema=market.schema_name, keys=traffic.keys, answers=_answers(traffic)),
        traffic,
        laps,
        killed_web_workers=len(killed_workers),
        server_errors=_merged(server_errors, server.closing_errors),
        pending_at_worker_kill=pending_at_worker_kill,
        pending_at_server_kill=pending_at_server_kill,
        durable_tasks_open_when_stopped=open_tasks,
    )


# --------------------------------------------------------------------------- a Celery worker


def test_worker_killed_mid_task_leaves_each_payment_charged_once(committed, closing, settings):
    laps = Laps()
    settings.DURABLE_TASK_STALE_AFTER = timedelta(seconds=0)  # our sweeps re-send at once
    market = fresh_marketplace("chk", simulator_latency_ms=0)
    first_queue, second_queue = (f"chaos-{uuid.uuid4().hex[:8]}" for _ in range(2))

    def worker_env(queue: str, lease_seconds: int) -> dict:
        return platform_env(
            database_url=database_url_for_tests(),
            redis_url=settings.REDIS_URL,
            queue=queue,
            domain=f"{market.schema_name}.localhost",
            extra={"DURABLE_TASK_LEASE_SECONDS": str(lease_seconds)},
        )

    # The first worker's lease on a task runs out 3 s after it took it: once it is dead, the
    # sweeper may send that task again. The second one stands by on a queue of its own.
    first = CeleryWorker(env=worker_env(first_queue, 3))
    closing(first)
    second = CeleryWorker(env=worker_env(second_queue, 300))
    closing(second)
    first.wait_ready()
    second.wait_ready()
    laps.lap("boot")
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = first_queue  # this process's after-commit sends
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
            # A refund the gateway could not take (down): its retry is a durable task, due in 2 s.
            refunded = payment_intent_create(
                amount=4000, currency="usd", payment_method="pm_card_visa", confirm=True
            )
            set_simulator_latency({"p50": 0}, down=True)
            refund = payment_refund(intent_id=refunded.id)
            assert (refunded.status, refund.status) == ("succeeded", "pending")
            # Three that do not fit the request's latency budget: a worker continues each, at a
            # gateway that takes 3 s to answer, time enough to be killed in the middle of it.
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

            at_gateway = wait_until(continuing_at_gateway, timeout=90, what="a continue task at the gateway")
            first.kill()  # main process and pool child at once: no ack, no cleanup
            killed_task_state = DurableTask.objects.get(kwargs__intent_id=at_gateway.intent_id).state

            # What the dead worker held or had prefetched is lost with it; the sweeper re-sends
            # every due task (the killed one once its lease is over) to the worker still alive.
            celery_app.conf.task_default_queue = second_queue
            set_simulator_latency({"p50": 0})  # recovery does not care how long the gateway takes

            def all_done() -> bool:
                durable.durable_sweep()
                return not DurableTask.objects.filter(state__in=("pending", "running")).exists()

            wait_until(all_done, timeout=90, interval=0.5, what="every durable task done")
            laps.lap("kill_and_sweep")
            attempt_after_sweeps = PaymentAttempt.objects.get(pk=at_gateway.pk).status
            second.close()
    finally:
        celery_app.conf.task_default_queue = previous_queue
        _drop_queues(settings.REDIS_URL, first_queue, second_queue)

    report = _check(
        settle_and_check(env=worker_env(second_queue, 300), schema=market.schema_name, keys=[], answers={}),
        None,
        laps,
        killed_attempt=at_gateway.id,
        killed_task_state=killed_task_state,
        killed_attempt_after_sweeps=attempt_after_sweeps,
    )
    assert report.data["statuses"] == {"succeeded": 6}
    assert report.data["kept_charges"] == 5  # the refunded payment's charge is not kept


# --------------------------------------------------------------------------- PostgreSQL restart


@pytest.mark.skipif(
    postgres_binaries() is None or postgres_os_user() is None,
    reason="needs PostgreSQL binaries and a non-root OS user for a throwaway cluster",
)
def test_postgres_restart_during_traffic_charges_each_key_once(closing):
    laps = Laps()
    cluster = ThrowawayPostgres()
    closing(cluster)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    slug = "chpg" + uuid.uuid4().hex[:8]
    database_url = cluster.create_database("chaos")
    env = platform_env(
        database_url=database_url, redis_url=settings.REDIS_URL, queue=queue, domain=f"{slug}.localhost"
    )
    made = provision(env=env, slug=slug, latency_ms=LATENCY)
    laps.lap("cluster_and_provision")
    probe = PendingProbe(database_url, made["schema"])
    closing(probe)
    server, worker = _boot(env, closing, laps)
    traffic = Traffic(
        port=server.port,
        host=made["domain"],
        api_key=made["api_key"],
        clients=CLIENTS,
        per_client=8,
        deadline=time.monotonic() + 120,
        methods=_sometimes_unknown,
    ).start()

    wait_until(
        lambda: traffic.answered >= 8 and probe.pending() > 0, timeout=90, what="requests at the gateway"
    )
    pending_at_restart = probe.pending()
    probe.close()
    cluster.restart()  # every connection of the web and worker processes is cut
    traffic.join()
    laps.lap("traffic")
    server.close()
    worker.close()
    open_tasks = probe.open_tasks()
    _drop_queues(settings.REDIS_URL, queue)

    _check(
        settle_and_check(env=env, schema=made["schema"], keys=traffic.keys, answers=_answers(traffic)),
        traffic,
        laps,
        pending_at_restart=pending_at_restart,
        server_errors=server.closing_errors,
        durable_tasks_open_when_stopped=open_tasks,
    )


# --------------------------------------------------------------------------- Redis restart


@pytest.mark.skipif(redis_binary() is None, reason="needs a redis-server binary")
def test_redis_restart_during_traffic_charges_each_key_once(committed, closing):
    laps = Laps()
    broker = ThrowawayRedis()
    closing(broker)
    market, domain, api_key = _shared_db_marketplace("chr")
    env = platform_env(
        database_url=database_url_for_tests(), redis_url=broker.url, queue="chaos", domain=domain
    )
    probe = PendingProbe(database_url_for_tests(), market.schema_name)
    closing(probe)
    server, worker = _boot(env, closing, laps)
    traffic = Traffic(
        port=server.port,
        host=domain,
        api_key=api_key,
        clients=CLIENTS,
        per_client=8,
        deadline=time.monotonic() + 120,
        methods=_sometimes_unknown,
    ).start()

    answered_while_down = []
    for answered in (6, 18):
        wait_until(
            lambda n=answered: traffic.answered >= n and probe.pending() > 0,
            timeout=90,
            what="requests at the gateway",
        )
        # Redis crashes with requests at the gateway and stays down while two more keys are
        # answered (or 5 s), then starts again empty: queued tasks, breakers and buckets are gone.
        broker.crash()
        before = traffic.answered
        wait_at_most(lambda n=before: traffic.answered >= n + 2, seconds=5)
        answered_while_down.append(traffic.answered - before)
        broker.start()
    traffic.join()
    laps.lap("traffic")
    server.close()
    worker.close()
    open_tasks = probe.open_tasks()

    _check(
        settle_and_check(env=env, schema=market.schema_name, keys=traffic.keys, answers=_answers(traffic)),
        traffic,
        laps,
        answered_while_redis_down=answered_while_down,
        server_errors=server.closing_errors,
        durable_tasks_open_when_stopped=open_tasks,
    )
