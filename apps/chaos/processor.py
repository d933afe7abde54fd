"""The processor as the harness sees it: the simulator, run as a separate party, behind a proxy
that injects the network's faults.

- ``ProcessorThread``: every call to the simulator runs on one thread with its own database
  connection, so the processor's records commit on their own, as an external processor's would:
  a transaction of ours that rolls back cannot take the processor's charge with it.
- ``ChaosGateway``: what ``gateway_for("simulator", ...)`` returns while a run is active. It wraps
  ``SimulatorGateway`` and fires the ``gateway.*`` fault points around each call, the late answers,
  worker and web process deaths; and it plays the rest of the processor: it remembers declines (so
  ``retrieve`` tells the truth about them, as Stripe's does), lets the customer complete a 3-D
  Secure challenge (the simulator's own ``action_complete``), and emits Stripe-shaped webhooks for
  each change.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import connection

from apps.chaos.faults import FaultPlan, WorkerDeath
from apps.payments.gateways.base import ChargeRequest, GatewayConfig, GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import SimulatorAction, SimulatorCharge, SimulatorRefund
from apps.tenants.db import tenant_connection


class Run(Protocol):
    """What the processor's side needs of a seed's run (``harness.Run``): its faults, the
    processor's thread and memory, what our side is doing, the labels, and the webhook outbox."""

    tenant: Any
    plan: FaultPlan
    processor: ProcessorThread
    memory: ProcessorMemory
    in_task: bool
    in_api: bool
    dying: bool
    nesting: bool

    def label(self, attempt_id: str) -> str: ...
    def authorize_seen(self, request: ChargeRequest, account: str) -> None: ...
    def resolve_while_in_flight(self) -> None: ...
    def emit_charge(self, account: str, attempt_id: str) -> None: ...
    def emit_refunded(self, account: str, attempt_id: str) -> None: ...
    def emit_declined(self, account: str, request: ChargeRequest, result: GatewayResult) -> None: ...


_ACTIVE: list[Run] = []  # the run the proxy serves (one at a time per process)


@contextlib.contextmanager
def serving(run: Run) -> Iterator[None]:
    """``ChaosGateway`` serves ``run`` inside the block."""
    _ACTIVE.append(run)
    try:
        yield
    finally:
        _ACTIVE.remove(run)


def active_run() -> Run:
    if not _ACTIVE:
        raise RuntimeError("ChaosGateway used outside a chaos run")
    return _ACTIVE[-1]


class ProcessorThread:
    """Runs callables on one thread with its own database connection (in the run's schema)."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="chaos-processor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            fn, box, done = item
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed back to the caller
                box.append((False, exc))
            done.set()
        connection.close()

    def call(self, tenant, fn: Callable[[], Any]) -> Any:
        box: list = []
        done = threading.Event()

        def run():
            tenant_connection().set_tenant(tenant)
            return fn()

        self._queue.put((run, box, done))
        done.wait()
        ok, value = box[0]
        if ok:
            return value
        raise value

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)


def _error(message: str) -> GatewayResult:
    return GatewayResult(Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, message=message)


def _lost() -> GatewayResult:
    return GatewayResult(
        Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="chaos: timeout, the answer was lost"
    )


class ChaosGateway:
    """The simulator adapter with faults injected at named points (see apps.chaos.faults)."""

    kind = "simulator"
    can_look_up = True

    def __init__(self, config: GatewayConfig):
        self.inner = SimulatorGateway(config)
        self.account = config.account_id
        self.run = active_run()

    # ----------------------------------------------------------------- plumbing

    def _call(self, op: str, label: str, work: Callable[[], GatewayResult]) -> GatewayResult:
        run, plan = self.run, self.run.plan
        if plan.fire(f"gateway.{op}.before", label):
            return _error("chaos: connection refused")
        result = run.processor.call(run.tenant, work)
        if plan.fire(f"gateway.{op}.duplicate", label):
            result = run.processor.call(run.tenant, work)
        self._die_maybe(label)
        if plan.fire(f"gateway.{op}.answer_lost", label):
            return _lost()
        return result

    def _die_maybe(self, label: str) -> None:
        run = self.run
        if run.in_task and run.plan.fire("task.die_after_gateway", label):
            raise WorkerDeath("chaos: the worker died after a processor call")
        if run.in_api and run.plan.fire("api.process_died", label):
            run.dying = True
            raise WorkerDeath("chaos: the web process died after a processor call")

    # ----------------------------------------------------------------- port

    def authorize(self, request: ChargeRequest) -> GatewayResult:
        run, plan = self.run, self.run.plan
        label = run.label(request.attempt_id)
        run.authorize_seen(request, self.account)
        if plan.fire("gateway.authorize.before", label):
            return _error("chaos: connection refused")
        nestable = not connection.in_atomic_block and not run.nesting
        if nestable and plan.fire("gateway.authorize.late_answer_inflight", label):
            run.resolve_while_in_flight()  # our timeout fired; the processor has not seen it yet
        result = run.processor.call(run.tenant, lambda: self._authorize(request))
        if nestable and plan.fire("gateway.authorize.late_answer_processed", label):
            run.resolve_while_in_flight()  # processed, but the answer arrives after the resolver ran
        if plan.fire("gateway.authorize.duplicate", label):
            result = run.processor.call(run.tenant, lambda: self._authorize(request))
        self._die_maybe(label)
        if plan.fire("gateway.authorize.answer_lost", label):
            return _lost()
        return result

    def _authorize(self, request: ChargeRequest) -> GatewayResult:
        result = self.inner.authorize(request)
        memory = self.run.memory
        if result.outcome in (Outcome.DECLINED_SOFT, Outcome.DECLINED_HARD):
            memory.declines[request.attempt_id] = result
            self.run.emit_declined(self.account, request, result)
        elif result.outcome in (Outcome.SUCCEEDED, Outcome.UNKNOWN):
            self.run.emit_charge(self.account, request.attempt_id)
        return result

    def _money_call(self, op: str, emit: Callable[[str, str], None], **kwargs) -> GatewayResult:
        """The simulator's ``op`` (capture, refund) with ``kwargs``, under the plan's faults; a
        SUCCEEDED answer is the processor's fact ``emit`` (the money moved)."""

        def work():
            result = getattr(self.inner, op)(**kwargs)
            if result.outcome == Outcome.SUCCEEDED:
                emit(self.account, kwargs["attempt_id"])
            return result

        return self._call(op, self.run.label(kwargs["attempt_id"]), work)

    def capture(self, *, attempt_id, reference, amount, currency, idempotency_key) -> GatewayResult:
        return self._money_call(
            "capture",
            self.run.emit_charge,
            attempt_id=attempt_id,
            reference=reference,
            amount=amount,
            currency=currency,
            idempotency_key=idempotency_key,
        )

    def cancel(self, *, attempt_id, reference, idempotency_key) -> GatewayResult:
        def work():
            result = self.inner.cancel(
                attempt_id=attempt_id, reference=reference, idempotency_key=idempotency_key
            )
            if result.outcome == Outcome.SUCCEEDED and result.status == GatewayStatus.CANCELED:
                self.run.emit_charge(self.account, attempt_id)
            return result

        return self._call("cancel", self.run.label(attempt_id), work)

    def refund(self, *, attempt_id, reference, refund_id, amount, currency, idempotency_key) -> GatewayResult:
        return self._money_call(
            "refund",
            self.run.emit_refunded,
            attempt_id=attempt_id,
            reference=reference,
            refund_id=refund_id,
            amount=amount,
            currency=currency,
            idempotency_key=idempotency_key,
        )

    def retrieve(self, *, attempt_id, reference) -> GatewayResult:
        def work():
            result = self.inner.retrieve(attempt_id=attempt_id, reference=reference)
            if result.status != GatewayStatus.NOT_FOUND:
                return result
            declined = self.run.memory.declines.get(attempt_id)
            if declined is not None:
                return declined
            return result

        return self._call("retrieve", self.run.label(attempt_id), work)


# --------------------------------------------------------------------------- processor-side facts


@dataclass
class ProcessorMemory:
    """What the simulator does not store but a real processor knows."""

    declines: dict[str, GatewayResult]

    @classmethod
    def empty(cls) -> ProcessorMemory:
        return cls({})


def challenges() -> list[tuple[str, str]]:
    """(account, attempt id) of every 3-D Secure challenge the simulator holds open, or that was
    cancelled before the customer acted (completing one of those late must not charge)."""
    return list(
        SimulatorAction.objects.filter(status__in=("requires_action", "canceled"))
        .exclude(amount=0)  # a cancellation tombstone of an attempt that never had a challenge
        .values_list("account", "attempt_id")
    )


def customer_completes_challenge(run: Run, account: str, attempt_id: str) -> bool:
    """The customer passes 3-D Secure at the processor (``SimulatorGateway.action_complete``): the
    charge is made (captured, or authorised for manual capture) unless the challenge was cancelled
    meanwhile. Runs on the processor's thread. Returns whether a charge was made."""
    news = SimulatorGateway(GatewayConfig(account_id=account)).action_complete(attempt_id=attempt_id)
    if news.status not in (GatewayStatus.CAPTURED, GatewayStatus.AUTHORIZED):
        return False
    run.emit_charge(account, attempt_id)
    return True


def charge_payload(charge: SimulatorCharge) -> dict:
    """A Stripe-shaped PaymentIntent for a simulator charge (what a webhook carries)."""
    fee = SimulatorGateway(GatewayConfig(account_id=charge.account)).fee_for(
        charge.amount_captured, charge.currency
    )
    refunds = [
        {"id": r.refund_id, "amount": r.amount, "status": "succeeded", "metadata": {"refund_id": r.refund_id}}
        for r in SimulatorRefund.objects.filter(charge=charge).order_by("created_at", "id")
    ]
    latest = {
        "id": charge.reference,
        "object": "charge",
        "payment_intent": charge.reference,
        "amount": charge.amount,
        "captured": charge.status == "captured",
        "amount_captured": charge.amount_captured,
        "amount_refunded": charge.amount_refunded,
        "metadata": {"attempt_id": charge.attempt_id},
        "refunds": {"data": refunds},
        "balance_transaction": {"fee": fee if charge.amount_captured else 0},
    }
    return {
        "id": charge.reference,
        "object": "payment_intent",
        "amount": charge.amount,
        "currency": charge.currency.lower(),
        "status": {"captured": "succeeded", "authorized": "requires_capture", "canceled": "canceled"}[
            charge.status
        ],
        "amount_received": charge.amount_captured,
        "amount_capturable": charge.amount if charge.status == "authorized" else 0,
        "metadata": {"attempt_id": charge.attempt_id},
        "latest_charge": latest,
    }
