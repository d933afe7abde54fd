"""One seed of the fault-injection harness (in the spirit of Jepsen's bank test and TigerBeetle's
VOPR): a scratch marketplace, a seeded schedule of interleaved operations through the real API
and services with faults injected at named points, then quiescence with every fault off, then the
invariants (apps.chaos.invariants) against the processor's own records.

Determinism: the schedule is drawn from ``Random("chaos:<seed>:ops")`` and the faults from their
own stream (apps.chaos.faults), both in the order things happen; the clock is frozen
(time-machine) and moved only by the schedule, and ``timezone.now()`` advances a microsecond per
call so rows created "at the same time" still sort in creation order. Ids are random: everything
is reported by operation index and order number (``o3.p1.a2``: order 3, its first payment,
attempt 2), never by id.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from unittest import mock

import time_machine
from celery import current_app
from django.conf import settings
from django.db import OperationalError, connection, connections
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.api import idempotency
from apps.chaos import processor as proc
from apps.chaos.faults import FaultPlan, WorkerDeath
from apps.chaos.invariants import check
from apps.chaos.result import SeedResult
from apps.core.durable import durable_messages_held, durable_run
from apps.core.jobs import registered_jobs
from apps.core.models import DurableTask
from apps.payments.breaker import CircuitBreaker
from apps.payments.gateways import registry
from apps.payments.gateways.base import ChargeRequest, GatewayResult, Notification, Outcome
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent, SimulatorCharge
from apps.payments.news import inbound_events_store
from apps.payments.services import attempt_lease
from apps.tenants.db import tenant_connection
from apps.tenants.scratch import scratch_marketplace
from apps.tenants.services import api_key_create

BASE_TIME = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# (payment method, weight): good cards, declines soft and hard, 3-D Secure, the simulator's faults.
CARDS = [
    ("pm_card_visa", 30),
    ("pm_card_mastercard", 10),
    ("pm_card_authenticationRequired", 14),
    ("pm_card_chargeDeclined", 5),
    ("pm_card_chargeDeclinedInsufficientFunds", 5),
    ("pm_card_visa_chargeDeclinedLostCard", 6),
    ("pm_sim_timeout_after_charge", 8),
    ("pm_sim_gateway_error", 4),
]
AMOUNTS = [500, 1250, 2000, 4999, 12000]
GOOD_CARD = "pm_card_visa"


@dataclass
class Order:
    """One purchase by one customer: whatever happens, it may be charged at most once."""

    index: int
    card: str
    amount: int
    manual: bool
    confirm_at_create: bool
    payment_id: str | None = None  # the payment the storefront knows of (from a response)
    created: bool = False  # the create request was sent (answered or not)
    ops: int = 0


class Run:
    """The state of one seed's run; ``ChaosGateway`` reaches it through ``processor.active_run``."""

    def __init__(self, seed: int, tenant, domain: str, api_key: str, traveller):
        self.seed = seed
        self.tenant = tenant
        self.domain = domain
        self.api_key = api_key
        self.traveller = traveller
        self.plan = FaultPlan.for_seed(seed)
        self.rng = random.Random(f"chaos:{seed}:ops")
        self.processor = proc.ProcessorThread()
        self.memory = proc.ProcessorMemory.empty()
        self.outbox: list[dict] = []  # webhooks the processor has yet to deliver, in order
        self.held: list[dict] = []  # webhooks held back (reordered)
        self.events_sent = 0
        self.in_task = False
        self.in_api = False
        self.dying = False
        self.nesting = False
        self.orders: list[Order] = []
        self.order_of_payment: dict[str, tuple[int, int]] = {}
        self.hard_declined: dict[str, int] = {}  # payment -> attempt number declined hard
        self.live_violations: list[dict] = []
        self.schedule: list[str] = []
        self.client = Client(HTTP_HOST=domain, raise_request_exception=False)

    # ----------------------------------------------------------------- clock

    def shift(self, seconds: float) -> None:
        self.traveller.shift(timedelta(seconds=seconds))

    # ----------------------------------------------------------------- labels

    def label(self, attempt_id: str) -> str:
        payment_id, _, number = attempt_id.rpartition("_")
        where = self.order_of_payment.get(payment_id)
        if where is None:
            with self.quiet():
                meta = PaymentIntent.objects.filter(pk=payment_id).values_list("metadata", flat=True).first()
            order = int((meta or {}).get("chaos_order", -1))
            count = sum(1 for o, _ in self.order_of_payment.values() if o == order)
            where = (order, count + 1)
            self.order_of_payment[payment_id] = where
        return f"o{where[0]}.p{where[1]}.a{number}"

    def payment_label(self, payment_id: str) -> str:
        return self.label(f"{payment_id}_0").rsplit(".", 1)[0]

    @contextlib.contextmanager
    def quiet(self):
        """Harness bookkeeping: no fault fires in here."""
        armed, self.plan.armed = self.plan.armed, False
        try:
            yield
        finally:
            self.plan.armed = armed

    # ----------------------------------------------------------------- processor side

    def authorize_seen(self, request: ChargeRequest, account: str) -> None:
        """A hard decline is final: a later attempt of the same payment (in the same confirmation)
        is a violation (issue 11, scenario 4)."""
        payment_id, _, number = request.attempt_id.rpartition("_")
        declined_at = self.hard_declined.get(payment_id)
        if declined_at is not None and int(number) > declined_at:
            self.live_violations.append(
                {
                    "invariant": "hard_decline_not_retried",
                    "payment": self.payment_label(payment_id),
                    "details": f"attempt {number} sent to {account} after attempt {declined_at} "
                    "was declined hard at the processor",
                }
            )
            del self.hard_declined[payment_id]

    def emit(self, account: str, kind: str, obj: dict) -> None:
        self.events_sent += 1
        self.outbox.append(
            {
                "account": account,
                "event": {
                    "id": f"evt_chaos_{self.events_sent}",
                    "object": "event",
                    "type": kind,
                    "created": int(time.time()),
                    "data": {"object": obj},
                },
            }
        )

    def emit_charge(self, account: str, attempt_id: str) -> None:
        charge = SimulatorCharge.objects.filter(account=account, attempt_id=attempt_id).first()
        if charge is None:
            return
        kind = {
            "captured": "payment_intent.succeeded",
            "authorized": "payment_intent.amount_capturable_updated",
            "canceled": "payment_intent.canceled",
        }[charge.status]
        self.emit(account, kind, proc.charge_payload(charge))

    def emit_refunded(self, account: str, attempt_id: str) -> None:
        charge = SimulatorCharge.objects.filter(account=account, attempt_id=attempt_id).first()
        if charge is not None:
            self.emit(account, "charge.refunded", proc.charge_payload(charge)["latest_charge"])

    def emit_declined(self, account: str, request: ChargeRequest, result: GatewayResult) -> None:
        if result.outcome == Outcome.DECLINED_HARD:
            payment_id, _, number = request.attempt_id.rpartition("_")
            self.hard_declined[payment_id] = int(number)
        self.emit(
            account,
            "payment_intent.payment_failed",
            {
                "id": request.attempt_id,
                "object": "payment_intent",
                "status": "requires_payment_method",  # as Stripe's payment_failed carries it
                "amount": request.amount,
                "metadata": {"attempt_id": request.attempt_id},
                "last_payment_error": {
                    "decline_code": result.decline_code,
                    "advice_code": result.advice_code,
                    "message": result.message,
                },
            },
        )

    # ----------------------------------------------------------------- our side: workers and jobs

    def reset_connection(self) -> None:
        """After a simulated crash: what a fresh process would have (a new connection)."""
        if not connection.in_atomic_block:
            connection.close()
        tenant_connection().set_tenant(self.tenant)

    def run_due(self, limit: int | None = None) -> int:
        """What a worker does: run due durable tasks, oldest first. Returns how many ran."""
        with self.quiet():
            due = list(
                DurableTask.objects.filter(
                    state__in=[DurableTask.State.PENDING, DurableTask.State.RUNNING],
                    next_run_at__lte=timezone.now(),
                )
                .order_by("next_run_at", "created_at")
                .values_list("pk", flat=True)[: limit or 1000]
            )
        for pk in due:
            self.in_task = True
            try:
                durable_run(task_id=str(pk))
            except WorkerDeath:
                self.reset_connection()  # the row stays leased; the sweeper hands it out later
            except Exception:
                self.reset_connection()  # the worker's own bookkeeping failed (a DB fault)
            finally:
                self.in_task = False
        return len(due)

    def run_jobs(self) -> None:
        """The periodic per-tenant jobs (apps.core.jobs), as beat would send them."""
        current_app.loader.import_default_modules()  # the apps' tasks modules register the jobs
        for job in registered_jobs():
            task = current_app.tasks.get(job.task_name)
            if task is None:
                continue
            # Faults strike our payments' jobs; the others (sealing the ledger, billing) run clean,
            # as their work depends on other sessions' transactions and would make seeds unrepeatable.
            quiet = self.quiet() if not job.task_name.startswith("payments.") else contextlib.nullcontext()
            try:
                with quiet:
                    task.run()
            except WorkerDeath:
                self.reset_connection()
            except Exception:
                self.reset_connection()

    def resolve_while_in_flight(self) -> None:
        """A processor call outlives its lease: the stale-attempt reconcile job and the resolver
        run now, before the call's answer is applied."""
        self.nesting = True
        saved = self.in_task, self.in_api
        self.in_task = self.in_api = False
        try:
            with self.quiet():
                self.shift(attempt_lease().total_seconds() + 60)
                self.run_jobs()
                self.run_due()
        finally:
            self.nesting = False
            self.in_task, self.in_api = saved
            tenant_connection().set_tenant(self.tenant)

    def deliver(self, item: dict) -> bool:
        """Deliver one webhook to the real inbound pipeline (store + durable task). Returns False
        when it was not acknowledged (the processor retries it)."""
        event = item["event"]
        try:
            account = GatewayAccount.objects.get(name=item["account"])
            inbound_events_store(
                account=account,
                provider="stripe",
                body=json.dumps(event),
                notifications=[
                    Notification(
                        event_id=event["id"],
                        type=event["type"],
                        payload=event,
                        occurred_at=datetime.fromtimestamp(event["created"], tz=UTC),
                    )
                ],
            )
        except WorkerDeath:
            self.reset_connection()
            return False
        except Exception:
            self.reset_connection()
            return False
        return True

    # ----------------------------------------------------------------- the storefront's client

    def api(self, method: str, path: str, body: dict | None, key: str) -> dict | None:
        """A storefront's request with an Idempotency-Key, retried with the same key after a 5xx,
        a lost response or a dead server (after its lock, ``API_IDEMPOTENCY_LOCK_SECONDS``).
        Returns the JSON body of the answer it finally got, or None if it gave up."""
        headers = {"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": key}
        lock = settings.API_IDEMPOTENCY_LOCK_SECONDS
        for _ in range(4):
            self.in_api = True
            try:
                response = self.client.generic(
                    method, path, json.dumps(body or {}), content_type="application/json", headers=headers
                )
            except WorkerDeath:
                self.dying = False
                self.reset_connection()
                self.shift(lock + 1)
                continue
            finally:
                self.in_api = False
            tenant_connection().set_tenant(self.tenant)
            if self.plan.fire("api.response_lost", path.rsplit("/", 1)[-1]):
                self.shift(1)
                continue
            if response.status_code >= 500:
                self.shift(1)
                continue
            data = response.json()
            if response.status_code == 409 and data.get("error", {}).get("code") == "idempotency_key_in_use":
                self.shift(lock + 1)
                continue
            return data
        return None

    # ----------------------------------------------------------------- the schedule

    def step(self, index: int) -> None:
        rng = self.rng
        self.plan.begin_op(index)
        known = [o.payment_id for o in self.orders if o.payment_id]
        with self.quiet():
            status = dict(PaymentIntent.objects.filter(pk__in=known).values_list("pk", "status"))
        uncreated = [o for o in self.orders if not o.created]
        by_status: dict[str, list[Order]] = {}
        for o in self.orders:
            if o.payment_id in status:
                by_status.setdefault(status[o.payment_id], []).append(o)
        with self.quiet():
            open_challenges = proc.challenges()
        # sorted by label (not by the random ids) for determinism
        challenge_labels = sorted((self.label(a), account, a) for account, a in open_challenges)
        choices: list[tuple[str, int]] = [("worker", 10), ("tick", 4), ("reconcile", 3)]
        if uncreated:
            choices.append(("create", 24))
        if by_status.get("requires_confirmation") or by_status.get("failed"):
            choices.append(("confirm", 5))
        if by_status.get("requires_action"):
            choices += [("confirm_again", 4), ("cancel", 2)]
        if challenge_labels:
            choices.append(("complete_3ds", 8))
        if by_status.get("requires_capture"):
            choices += [("capture", 10), ("cancel", 3)]
        if by_status.get("succeeded"):
            choices.append(("refund", 7))
        if self.outbox or self.held:
            choices.append(("webhooks", 10))
        names = [c for c, _ in choices]
        op = rng.choices(names, weights=[w for _, w in choices])[0]
        self.plan.armed = True
        faults = self.plan.total
        try:
            self._op(op, index, rng, uncreated, by_status, challenge_labels)
        finally:
            self.plan.armed = False
            if self.plan.total != faults:
                self.reset_connection()

    def _op(self, op, index, rng, uncreated, by_status, challenge_labels) -> None:
        key = f"chaos-{self.seed}-{index}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
        if op == "create":
            order = uncreated[0]
            order.created = True
            self.schedule.append(
                f"op#{index} create o{order.index} {order.card} {order.amount} "
                f"{'manual' if order.manual else 'automatic'}{' confirm' if order.confirm_at_create else ''}"
            )
            body = {
                "amount": order.amount,
                "currency": "usd",
                "payment_method": order.card,
                "confirm": order.confirm_at_create,
                "capture_method": "manual" if order.manual else "automatic",
                "metadata": {"chaos_order": str(order.index)},
            }
            data = self.api("POST", "/api/v1/payments", body, key)
            if data and str(data.get("id", "")).startswith("pay_"):
                order.payment_id = data["id"]
            return
        if op == "confirm":
            order = rng.choice(by_status.get("requires_confirmation", []) + by_status.get("failed", []))
            card = order.card if rng.random() < 0.5 else GOOD_CARD
            self.schedule.append(f"op#{index} confirm o{order.index} {card}")
            self.hard_declined.pop(order.payment_id or "", None)
            self.api("POST", f"/api/v1/payments/{order.payment_id}/confirm", {"payment_method": card}, key)
            return
        if op == "confirm_again":  # a customer gives up on 3-D Secure and pays with another card
            order = rng.choice(by_status["requires_action"])
            self.schedule.append(f"op#{index} confirm o{order.index} {GOOD_CARD} (from requires_action)")
            self.hard_declined.pop(order.payment_id or "", None)
            self.api(
                "POST", f"/api/v1/payments/{order.payment_id}/confirm", {"payment_method": GOOD_CARD}, key
            )
            return
        if op == "complete_3ds":
            label, account, attempt_id = rng.choice(challenge_labels)
            self.schedule.append(f"op#{index} customer completes 3-D Secure of {label}")
            self.processor.call(
                self.tenant, lambda: proc.customer_completes_challenge(self, account, attempt_id)
            )
            return
        if op == "capture":
            order = rng.choice(by_status["requires_capture"])
            partial = rng.random() < 0.3
            body = {"amount": order.amount // 2} if partial else {}
            self.schedule.append(f"op#{index} capture o{order.index}{' half' if partial else ''}")
            self.api("POST", f"/api/v1/payments/{order.payment_id}/capture", body, key)
            return
        if op == "cancel":
            pool = by_status.get("requires_capture", []) + by_status.get("requires_action", [])
            order = rng.choice(sorted(pool, key=lambda o: o.index))
            self.schedule.append(f"op#{index} cancel o{order.index}")
            self.api("POST", f"/api/v1/payments/{order.payment_id}/cancel", {}, key)
            return
        if op == "refund":
            order = rng.choice(by_status["succeeded"])
            partial = rng.random() < 0.4
            body = {"amount": max(1, order.amount // 4)} if partial else {}
            self.schedule.append(f"op#{index} refund o{order.index}{' quarter' if partial else ' rest'}")
            self.api("POST", f"/api/v1/payments/{order.payment_id}/refunds", body, key)
            return
        if op == "webhooks":
            count = rng.randint(1, 4)
            self.schedule.append(f"op#{index} processor delivers up to {count} webhooks")
            self.deliver_some(count)
            return
        if op == "worker":
            limit = rng.randint(1, 5)
            self.schedule.append(f"op#{index} worker runs up to {limit} due tasks")
            self.run_due(limit)
            return
        if op == "reconcile":
            self.schedule.append(f"op#{index} periodic jobs")
            self.run_jobs()
            return
        seconds = rng.choice([1, 5, 30, 90, 150, 400])
        self.schedule.append(f"op#{index} clock +{seconds}s")
        self.shift(seconds)

    def deliver_some(self, count: int) -> None:
        for _ in range(count):
            if not self.outbox:
                if not self.held:
                    return
                self.outbox.extend(self.held)  # what was held back comes after the rest
                self.held.clear()
            item = self.outbox.pop(0)
            if self.plan.fire("webhook.lost", item["event"]["type"]):
                continue
            if self.plan.fire("webhook.reorder", item["event"]["type"]):
                self.held.append(item)
                continue
            if not self.deliver(item):
                self.outbox.append(item)  # not acknowledged: the processor retries it later
                continue
            if self.plan.fire("webhook.duplicate", item["event"]["type"]):
                self.deliver(item)

    # ----------------------------------------------------------------- quiescence

    def quiesce(self) -> int:
        """Every fault off: deliver every webhook, run the jobs and the due work, moving the clock
        past backoffs and leases, until nothing is left to do. Returns how many rounds it took."""
        self.plan.armed = False
        for rounds in range(1, 80):
            while self.outbox or self.held:
                self.outbox.extend(self.held)
                self.held.clear()
                pending, self.outbox = self.outbox, []
                for item in pending:
                    if not self.deliver(item):
                        self.outbox.append(item)
            self.run_jobs()
            ran = self.run_due()
            if ran:
                continue
            waiting = DurableTask.objects.filter(
                state__in=[DurableTask.State.PENDING, DurableTask.State.RUNNING]
            ).order_by("next_run_at")
            first = waiting.first()
            open_attempts = PaymentAttempt.objects.filter(
                status__in=[PaymentAttempt.Status.PENDING, PaymentAttempt.Status.UNKNOWN]
            ).exists()
            # Attempts waiting for the customer are checked at the gateway on a schedule (their
            # webhook may be lost): move the clock to the next check.
            next_check = (
                PaymentAttempt.objects.filter(
                    status=PaymentAttempt.Status.REQUIRES_ACTION, next_resolve_at__isnull=False
                )
                .order_by("next_resolve_at")
                .values_list("next_resolve_at", flat=True)
                .first()
            )
            if first is not None:
                delta = (first.next_run_at - timezone.now()).total_seconds()
                self.shift(max(delta, 0) + 1)
            elif open_attempts and rounds < 70:
                self.shift(600)  # the reconcile job picks up stale attempts
            elif next_check is not None and rounds < 70:
                self.shift(max((next_check - timezone.now()).total_seconds(), 0) + 1)
            else:
                return rounds
        return 80


# --------------------------------------------------------------------------- one seed


class _LogicalNow:
    """``timezone.now()`` on the frozen clock, plus a microsecond per call: rows created in one
    instant still sort in the order they were created, so work runs in a deterministic order."""

    def __init__(self, real):
        self.real = real
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.real() + timedelta(microseconds=self.calls)


@contextlib.contextmanager
def _scratch_marketplace(seed: int):
    """A marketplace of its own for one seed (as a new one is: cloned from the template), with an
    API key, dropped afterwards (``apps.tenants.scratch``)."""
    with scratch_marketplace(like=None, purpose=f"chaos-{seed}") as scratch:
        with schema_context("public"):
            _, raw = api_key_create(tenant=scratch.marketplace, name="chaos")
        yield scratch.marketplace, scratch.domain, raw


def run_seed(seed: int, *, before_quiescence: Callable[[Run], None] | None = None) -> SeedResult:
    """Run one seed from scratch and check the invariants. Leaves nothing behind.
    ``before_quiescence`` (tests) runs after the schedule, with every fault off."""
    started = time.perf_counter()
    with (
        _scratch_marketplace(seed) as (tenant, domain, api_key),
        time_machine.travel(BASE_TIME, tick=False) as traveller,
        override_settings(PAYMENT_LATENCY_BUDGET_MS=3_600_000),
        mock.patch.dict(registry.GATEWAYS, {"simulator": "apps.chaos.processor.ChaosGateway"}),
        durable_messages_held(),  # the harness is the worker: it runs the due tasks itself
        mock.patch.object(timezone, "now", _LogicalNow(timezone.now)),
    ):
        run = Run(seed, tenant, domain, api_key, traveller)
        try:
            with proc.serving(run):
                result = _drive(run, before_quiescence)
        finally:
            run.processor.stop()
            tenant_connection().set_schema_to_public()
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _db_faults(run: Run):
    """COMMIT failing before or after it reaches the database, and queries failing on a dropped
    connection: on this thread's connection only (the processor has its own)."""
    conn = connections["default"]
    real_commit = conn.commit

    def commit():
        if run.plan.fire("db.commit.before"):
            raise OperationalError("chaos: the connection was lost before COMMIT")
        real_commit()
        if run.plan.fire("db.commit.after"):
            raise OperationalError("chaos: the connection was lost after COMMIT (it was committed)")

    def dropped(execute, sql, params, many, context):
        if run.plan.fire("db.connection_dropped"):
            raise OperationalError("chaos: server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    real_release = idempotency.idempotency_release

    def release(*, record):
        if not run.dying:  # a killed process releases nothing
            real_release(record=record)

    conn.commit = commit  # type: ignore[method-assign]
    # One connection for the whole run, as a worker keeps it (CONN_MAX_AGE=0 would reconnect after
    # every test-client request); one that saw an error is still closed and replaced.
    max_age = conn.settings_dict.get("CONN_MAX_AGE")
    conn.settings_dict["CONN_MAX_AGE"] = None
    try:
        with conn.execute_wrapper(dropped), mock.patch.object(idempotency, "idempotency_release", release):
            yield
    finally:
        del conn.commit
        conn.settings_dict["CONN_MAX_AGE"] = max_age


def _drive(run: Run, before_quiescence: Callable[[Run], None] | None) -> SeedResult:
    rng = run.rng
    tenant_connection().set_tenant(run.tenant)
    GatewayAccount.objects.filter(kind="simulator").update(settings={})
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()
    cards, weights = [c for c, _ in CARDS], [w for _, w in CARDS]
    for i in range(rng.randint(5, 8)):
        run.orders.append(
            Order(
                index=i,
                card=rng.choices(cards, weights=weights)[0],
                amount=rng.choice(AMOUNTS),
                manual=rng.random() < 0.3,
                confirm_at_create=rng.random() < 0.85,
            )
        )
    n_ops = rng.randint(45, 60)
    with _db_faults(run):
        for index in range(n_ops):
            run.step(index)
    if before_quiescence is not None:
        before_quiescence(run)
    run.quiesce()
    result = SeedResult(seed=run.seed, operations=n_ops)
    check(run, result)
    result.faults = dict(sorted(run.plan.counts.items()))
    result.schedule = run.schedule
    result.fault_log = run.plan.log
    return result
