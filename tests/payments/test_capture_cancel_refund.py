"""Capture, cancel and refund under faults (issue 11, item 5 and the refund findings): no database
transaction is open during the gateway call, an unsettled answer is never taken for a refusal,
and a durable task (or the reconcile job) finishes what was accepted, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from apps.core.models import DurableTask
from apps.ledger.models import Entry, LedgerEvent
from apps.payments import services
from apps.payments.gateways.base import GatewayResult, GatewayStatus, Outcome
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import PaymentAttempt, PaymentIntent, Refund, SimulatorCharge, SimulatorRefund
from apps.payments.services import (
    PaymentError,
    confirm,
    late_charges,
    ledger_events,
    operations,
    payment_cancel,
    payment_capture,
    payment_intent_create,
    payment_refund,
    payments_reconcile,
    resolution,
    setup,
)
from tests.support import fresh_marketplace, run_durable_tasks


class ProcessDied(BaseException):
    """The process stops here (``kill -9``): no handler of ours runs."""


class FaultyGateway:
    """The real simulator adapter with faults scripted per operation, in order: ``error`` (a 503,
    nothing done), ``lost`` (done at the simulator, the answer lost), ``timeout`` (the answer lost,
    nothing done), ``die_before`` / ``die_after`` (the process dies before / after the call).
    Records each call, and whether a database transaction was open during it."""

    def __init__(self, real, script: dict[str, list[str]], calls: list[tuple[str, bool]]):
        self.real, self.script, self.calls = real, script, calls

    def __getattr__(self, name):
        return getattr(self.real, name)

    def _call(self, operation: str, **kwargs) -> GatewayResult:
        self.calls.append((operation, connection.in_atomic_block))
        fault = self.script.get(operation, []).pop(0) if self.script.get(operation) else None
        if fault == "error":
            return GatewayResult(
                Outcome.GATEWAY_ERROR, GatewayStatus.ERROR, message="503 Service Unavailable"
            )
        if fault == "timeout":
            return GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="read timeout")
        if fault == "die_before":
            raise ProcessDied
        result = getattr(self.real, operation)(**kwargs)
        if fault == "lost":
            return GatewayResult(Outcome.UNKNOWN, GatewayStatus.UNKNOWN, message="read timeout")
        if fault == "die_after":
            raise ProcessDied
        return result

    def capture(self, **kwargs):
        return self._call("capture", **kwargs)

    def cancel(self, **kwargs):
        return self._call("cancel", **kwargs)

    def refund(self, **kwargs):
        return self._call("refund", **kwargs)


@pytest.fixture
def faults(monkeypatch):
    """``faults(capture=["lost"])``: script the gateways' faults; returns the list of calls."""
    calls: list[tuple[str, bool]] = []
    real_client = setup.gateway_client

    def install(**script):
        # Every services module that calls a gateway holds its own reference to gateway_client
        # (setup's is the one gateway_call uses).
        for module in (confirm, late_charges, operations, resolution, setup):
            monkeypatch.setattr(
                module, "gateway_client", lambda *a, **k: FaultyGateway(real_client(*a, **k), script, calls)
            )
        return calls

    return install


def pay(pm="pm_card_visa", amount=10000, **kw) -> PaymentIntent:
    return payment_intent_create(amount=amount, currency="usd", payment_method=pm, confirm=True, **kw)


def run_due_tasks() -> int:
    """One round of the durable runner with every waiting task due now (time passes)."""
    DurableTask.objects.filter(state=DurableTask.State.PENDING).update(next_run_at=timezone.now())
    return run_durable_tasks(rounds=1)


def ledger_lines(intent_id: str, event_type: str) -> list[tuple[str, str, int]]:
    return sorted(
        (e.account.code, e.side, e.amount)
        for e in Entry.objects.filter(event__stream=intent_id, event__type=event_type).select_related(
            "account"
        )
    )


def events(intent_id: str, event_type: str) -> int:
    return LedgerEvent.objects.filter(stream=intent_id, type=event_type).count()


def test_capture_whose_commit_fails_after_the_gateway_captured_is_recorded_once(mesh, faults, monkeypatch):
    intent = pay(capture_method="manual")
    calls = faults()
    real_record = ledger_events.ledger_record
    failed: list[dict] = []

    def record_failing_once(**kwargs):
        if kwargs["event_type"] == "ChargeCaptured" and not failed:
            failed.append(kwargs)
            raise ConnectionError("server closed the connection unexpectedly")
        return real_record(**kwargs)

    monkeypatch.setattr(ledger_events, "ledger_record", record_failing_once)

    with pytest.raises(ConnectionError):
        payment_capture(intent_id=intent.id, amount=7000)

    # The processor captured; our commit failed. Nothing was lost: the durable task finishes it.
    assert [op for op, _ in calls] == ["capture"]
    run_due_tasks()

    intent.refresh_from_db()
    attempt = intent.attempts.get()
    charge = SimulatorCharge.objects.get(attempt_id=attempt.id)
    assert (intent.status, intent.amount_received, intent.amount_capturable) == ("succeeded", 7000, 0)
    assert (attempt.status, attempt.amount_captured, attempt.pending_operation) == ("captured", 7000, "")
    assert (charge.status, charge.amount_captured) == ("captured", 7000)
    assert events(intent.id, "ChargeCaptured") == 1
    assert ("processor_clearing:primary", "D", 7000) in ledger_lines(intent.id, "ChargeCaptured")
    assert run_due_tasks() == 0


@pytest.mark.parametrize("fault", ["lost", "timeout", "error"])
def test_unsettled_capture_is_not_refused_and_the_durable_task_captures_it_once(mesh, faults, fault):
    intent = pay(capture_method="manual")
    calls = faults(capture=[fault])

    answered = payment_capture(intent_id=intent.id)

    # Not refused: the payment is answered as it is, its capture pending.
    assert (answered.status, answered.amount_capturable) == ("requires_capture", 10000)
    assert intent.attempts.get().pending_operation == "capture"
    with pytest.raises(PaymentError, match="capture in progress") as again:
        payment_capture(intent_id=intent.id)
    assert again.value.code == "payment_intent_unexpected_state"
    with pytest.raises(PaymentError, match="capture in progress"):
        payment_cancel(intent_id=intent.id)
    assert [op for op, _ in calls] == ["capture"]  # never a second capture while one is in flight

    run_due_tasks()

    intent.refresh_from_db()
    attempt = intent.attempts.get()
    assert (intent.status, intent.amount_received) == ("succeeded", 10000)
    assert (attempt.status, attempt.pending_operation, attempt.fee) == ("captured", "", 320)
    assert SimulatorCharge.objects.get(attempt_id=attempt.id).amount_captured == 10000
    assert events(intent.id, "ChargeCaptured") == 1
    # Found by retrieve when the first call went through; otherwise the same capture again.
    assert [op for op, _ in calls] == (["capture"] if fault == "lost" else ["capture", "capture"])


def test_capture_refused_by_the_gateway_is_still_an_error_and_can_be_asked_again(mesh, faults):
    intent = pay(capture_method="manual")
    SimulatorCharge.objects.filter(attempt_id=f"{intent.id}_1").update(amount=5000)  # it holds less

    with pytest.raises(PaymentError, match="refused the capture") as refused:
        payment_capture(intent_id=intent.id)

    assert refused.value.code == "capture_failed"
    attempt = intent.attempts.get()
    assert (attempt.status, attempt.pending_operation) == ("authorized", "")
    assert payment_capture(intent_id=intent.id, amount=5000).status == "succeeded"


@pytest.mark.parametrize("fault", ["lost", "timeout", "error"])
def test_unsettled_cancel_is_not_refused_and_the_durable_task_voids_it(mesh, faults, fault):
    intent = pay(capture_method="manual")
    calls = faults(cancel=[fault])

    answered = payment_cancel(intent_id=intent.id, reason="abandoned")

    assert answered.status == "requires_capture"
    assert intent.attempts.get().pending_operation == "cancel"
    assert payment_cancel(intent_id=intent.id).status == "requires_capture"  # already under way
    with pytest.raises(PaymentError, match="cancel in progress"):
        payment_capture(intent_id=intent.id)
    assert [op for op, _ in calls] == ["cancel"]

    run_due_tasks()

    intent.refresh_from_db()
    attempt = intent.attempts.get()
    assert (intent.status, intent.amount_capturable) == ("canceled", 0)
    assert (attempt.status, attempt.pending_operation) == ("canceled", "")
    assert SimulatorCharge.objects.get(attempt_id=attempt.id).status == "canceled"
    assert (events(intent.id, "AuthorizationVoided"), events(intent.id, "PaymentCanceled")) == (1, 1)
    assert LedgerEvent.objects.get(stream=intent.id, type="PaymentCanceled").payload["reason"] == "abandoned"


def test_refund_with_two_gateway_errors_then_success_succeeds_and_stays_reserved_until_then(mesh, faults):
    intent = pay(amount=5000)
    calls = faults(refund=["error", "error"])

    refund = payment_refund(intent_id=intent.id, amount=2000)

    assert refund.status == "pending"  # the inline call failed
    run_due_tasks()  # the durable task's first run fails again

    refund.refresh_from_db()
    assert refund.status == "pending"
    assert PaymentIntent.objects.get(pk=intent.id).amount_refunded == 2000  # still reserved
    task = DurableTask.objects.get(handler="apps.payments.services.refund_execute")
    assert (task.state, task.attempts) == ("pending", 1)  # to be retried with backoff, not done

    run_due_tasks()

    refund.refresh_from_db()
    assert (refund.status, refund.reference) == ("succeeded", refund.id)
    assert PaymentIntent.objects.get(pk=intent.id).amount_refunded == 2000
    assert SimulatorRefund.objects.filter(charge__attempt_id=f"{intent.id}_1").count() == 1
    assert ledger_lines(intent.id, "RefundSucceeded") == [
        ("processor_clearing:primary", "C", 2000),
        ("refunds", "D", 2000),
    ]
    assert [op for op, _ in calls] == ["refund", "refund", "refund"]
    assert DurableTask.objects.get(pk=task.pk).state == "done"


def test_refund_refused_by_the_gateway_fails_and_releases_its_reservation(mesh):
    intent = pay(amount=5000)
    SimulatorCharge.objects.filter(attempt_id=f"{intent.id}_1").update(amount_refunded=4000)

    refund = payment_refund(intent_id=intent.id, amount=2000)

    assert refund.status == "failed"
    assert PaymentIntent.objects.get(pk=intent.id).amount_refunded == 0
    assert run_due_tasks() == 1  # its durable task finds it final
    assert Refund.objects.get(pk=refund.pk).status == "failed"


@pytest.mark.parametrize("death", ["die_before", "die_after"])
def test_refund_whose_process_died_is_found_by_the_reconcile_job_and_finished_once(mesh, faults, death):
    intent = pay(amount=5000)
    calls = faults(refund=[death])

    with pytest.raises(ProcessDied):
        payment_refund(intent_id=intent.id, amount=1500)

    refund = Refund.objects.get(intent_id=intent.id)
    assert (refund.status, PaymentIntent.objects.get(pk=intent.id).amount_refunded) == ("pending", 1500)
    # Long after, with no live durable task left for it (its retries exhausted, or none ever).
    Refund.objects.filter(pk=refund.pk).update(created_at=timezone.now() - timedelta(hours=1))
    DurableTask.objects.filter(handler="apps.payments.services.refund_execute").update(state="failed")

    payments_reconcile()
    run_due_tasks()

    refund.refresh_from_db()
    assert refund.status == "succeeded"
    assert PaymentIntent.objects.get(pk=intent.id).amount_refunded == 1500
    assert list(SimulatorRefund.objects.filter(refund_id=refund.id).values_list("amount", flat=True)) == [
        1500
    ]
    assert events(intent.id, "RefundSucceeded") == 1
    # After the gateway had refunded, resolution found it by our refund id: no second request.
    assert [op for op, _ in calls] == (["refund"] if death == "die_after" else ["refund", "refund"])
    payments_reconcile()
    assert run_due_tasks() == 0


@pytest.mark.slow
def test_no_database_transaction_is_open_during_capture_cancel_or_refund_calls(committed, faults):
    tenant = fresh_marketplace("ccr")
    calls = faults()
    with tenant_context(tenant):
        held = pay(capture_method="manual")
        to_cancel = pay(capture_method="manual")

        payment_capture(intent_id=held.id)
        payment_cancel(intent_id=to_cancel.id)
        refund = payment_refund(intent_id=held.id, amount=100)

        assert [PaymentIntent.objects.get(pk=i).status for i in (held.id, to_cancel.id)] == [
            "succeeded",
            "canceled",
        ]
        assert refund.status == "succeeded"
    assert calls == [("capture", False), ("cancel", False), ("refund", False)]


def test_reconcile_leaves_work_with_a_live_task_alone_and_requeues_a_stranded_capture(mesh, faults):
    refunded = pay(amount=5000)
    faults(refund=["timeout"], capture=["timeout"])
    refund = payment_refund(intent_id=refunded.id, amount=500)
    held = pay(capture_method="manual")
    payment_capture(intent_id=held.id)
    long_ago = timezone.now() - timedelta(hours=1)
    Refund.objects.filter(pk=refund.pk).update(created_at=long_ago)
    PaymentAttempt.objects.filter(intent_id=held.id).update(pending_since=long_ago)

    # Both still have their durable task (waiting to retry): nothing to queue.
    assert payments_reconcile() == 0
    # The capture's task gave up (its retries exhausted): the reconcile job queues it again.
    DurableTask.objects.filter(handler="apps.payments.services.payment_capture_resolve").update(
        state="failed"
    )
    assert payments_reconcile() == 1
    run_due_tasks()

    assert PaymentIntent.objects.get(pk=held.id).status == "succeeded"
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
    assert events(held.id, "ChargeCaptured") == 1


# --------------------------------------------------------------------------- Stripe: refund lookup


def refund_json(refund_id: str, ours: str, status: str = "succeeded", amount: int = 400) -> dict:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "status": status,
        "payment_intent": "pi_canned",
        "metadata": {"refund_id": ours},
    }


def refund_page(*refunds: dict, has_more: bool = False) -> dict:
    return {"object": "list", "url": "/v1/refunds", "has_more": has_more, "data": list(refunds)}


@pytest.mark.parametrize(
    ("pages", "outcome", "status", "reference"),
    [
        ([refund_page(refund_json("re_s1", "re_ours"))], Outcome.SUCCEEDED, GatewayStatus.CAPTURED, "re_s1"),
        (
            [refund_page(refund_json("re_s9", "re_other"), has_more=True), refund_page(refund_json("re_s2", "re_ours", "pending"))],
            Outcome.SUCCEEDED,
            GatewayStatus.CAPTURED,
            "re_s2",
        ),
        ([refund_page(refund_json("re_s3", "re_ours", "failed"))], Outcome.DECLINED_HARD, GatewayStatus.DECLINED, "re_s3"),
        ([refund_page(refund_json("re_s4", "re_other"))], Outcome.GATEWAY_ERROR, GatewayStatus.NOT_FOUND, None),
        ([{"error": {"type": "api_error", "message": "boom"}}], Outcome.UNKNOWN, GatewayStatus.UNKNOWN, None),
    ],
)  # fmt: skip
def test_stripe_finds_our_refund_by_its_id(pages, outcome, status, reference):
    from tests.payments.test_stripe_gateway import CannedClient, make_gateway

    client = CannedClient(*[(500 if "error" in page else 200, page) for page in pages])
    gateway = make_gateway("http://stripe.invalid", client)

    found = gateway.refund_retrieve(attempt_id="pay_x_1", reference="pi_canned", refund_id="re_ours")

    assert (found.outcome, found.status, found.reference) == (outcome, status, reference)
    assert [(s.method, s.path, s.form["payment_intent"]) for s in client.sent] == [
        ("GET", "/v1/refunds", ["pi_canned"])
    ] * len(pages)
    if len(pages) == 2:
        assert client.sent[1].form["starting_after"] == ["re_s9"]


def test_a_refund_without_a_lookup_is_not_sent_again_after_the_idempotency_window(mesh, faults, monkeypatch):
    intent = pay(amount=5000)
    calls = faults(refund=["timeout"])
    refund = payment_refund(intent_id=intent.id, amount=500)
    monkeypatch.delattr(SimulatorGateway, "refund_retrieve")  # as an adapter with no refund lookup
    Refund.objects.filter(pk=refund.pk).update(created_at=timezone.now() - timedelta(days=2))

    run_due_tasks()

    # Sending it again now could refund twice (the processor forgot the key): an operator looks.
    assert Refund.objects.get(pk=refund.pk).status == "pending"
    assert [op for op, _ in calls] == ["refund"]
    assert "idempotency window" in DurableTask.objects.get(handler=services.REFUND_HANDLER).last_error
