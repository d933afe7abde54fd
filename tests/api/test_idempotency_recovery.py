"""A retry with the same ``Idempotency-Key`` after a crash, a 5xx or an expired lock resumes what
the first request created or did (issue 11, scenario 1): it never creates, nor charges, a second
one. The first request's crash is simulated after its work committed, by making the building of
its answer (the view's ``Response``) raise once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.exceptions import APIException

from apps.api import idempotency
from apps.api.models import IdempotencyRecord
from apps.api.v1 import payments as payments_api
from apps.api.v1 import vendors as vendors_api
from apps.payments.breaker import CircuitBreaker
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import GatewayAccount, PaymentIntent, Refund, SimulatorCharge, SimulatorRefund
from apps.payments.services import drive
from apps.tenants.services import api_key_create, api_key_revoke
from apps.vendors.models import Payout
from tests.api.conftest import ApiClient, pay
from tests.api.test_vendors_api import enable, invite
from tests.support import run_durable_tasks, wait_for

BODY = {"amount": 1234, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


def assert_crashed(response) -> None:
    """The request crashed after its work was committed: the API answers a JSON 500 (never a page
    or a raised exception), and the key stays bound to what was created."""
    assert response.status_code == 500, response.content
    assert response.json()["error"]["code"] == "internal_error"


def key(value: str) -> dict:
    return {"Idempotency-Key": value}


def fail_once(monkeypatch, module, name: str, error: Exception) -> None:
    """``module.name`` raises ``error`` the first time it is called, then works."""
    real = getattr(module, name)
    calls: list[int] = []

    def failing(*args, **kwargs):
        if not calls:
            calls.append(1)
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def crash_once(monkeypatch, module, name: str) -> None:
    fail_once(monkeypatch, module, name, RuntimeError("crashed after the work was committed"))


def charges(payment_id: str):
    return SimulatorCharge.objects.filter(attempt_id__startswith=f"{payment_id}_")


def test_a_retry_after_a_crash_resumes_the_payment_it_created(api, monkeypatch):
    crash_once(monkeypatch, payments_api, "Response")
    assert_crashed(api.post("/api/v1/payments", BODY, headers=key("k-crash")))

    retry = api.post("/api/v1/payments", BODY, headers=key("k-crash"))
    again = api.post("/api/v1/payments", BODY, headers=key("k-crash"))

    payment = retry.json()
    assert list(PaymentIntent.objects.filter(amount=1234).values_list("id", "status")) == [
        (payment["id"], "succeeded")
    ]
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert payment["status"] == "succeeded" and payment["amount_received"] == 1234
    assert charges(payment["id"]).count() == 1
    assert again.status_code == 201 and again.json() == payment


def test_a_retry_after_a_5xx_answer_resumes_the_payment_instead_of_replaying_the_5xx(api, monkeypatch):
    fail_once(monkeypatch, payments_api, "Response", APIException("the database went away"))
    first = api.post("/api/v1/payments", BODY, headers=key("k-500"))
    record = IdempotencyRecord.objects.get(key="k-500")

    retry = api.post("/api/v1/payments", BODY, headers=key("k-500"))

    assert first.status_code == 500
    # stored once work started, bound to the payment created in the same transaction
    assert (record.status, record.response_status) == ("complete", 500)
    (created,) = PaymentIntent.objects.filter(amount=1234)
    assert (record.resource_type, record.resource_ids) == ("payment", [created.id])
    assert retry.status_code == 201 and retry.json()["id"] == created.id
    assert retry.json()["status"] == "succeeded"
    assert charges(created.id).count() == 1
    assert IdempotencyRecord.objects.get(key="k-500").response_status == 201


def test_a_5xx_before_any_work_started_releases_the_key(api, monkeypatch):
    fail_once(monkeypatch, payments_api, "payment_intent_create", APIException("the database went away"))
    first = api.post("/api/v1/payments", BODY, headers=key("k-early"))

    retry = api.post("/api/v1/payments", BODY, headers=key("k-early"))

    assert first.status_code == 500
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry
    assert PaymentIntent.objects.filter(amount=1234).count() == 1


def test_a_retry_after_the_first_request_died_resumes_once_its_lock_passed(api, monkeypatch):
    crash_once(monkeypatch, payments_api, "Response")
    # the process dies: nothing after the crash runs, the record stays in flight
    monkeypatch.setattr(idempotency, "idempotency_complete", lambda **_: None)
    monkeypatch.setattr(idempotency, "idempotency_release", lambda **_: None)
    assert_crashed(api.post("/api/v1/payments", BODY, headers=key("k-died")))
    monkeypatch.undo()

    busy = api.post("/api/v1/payments", BODY, headers=key("k-died"))
    IdempotencyRecord.objects.filter(key="k-died").update(locked_until=timezone.now() - timedelta(seconds=1))
    retry = api.post("/api/v1/payments", BODY, headers=key("k-died"))

    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_key_in_use"
    (created,) = PaymentIntent.objects.filter(amount=1234)
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert retry.json()["id"] == created.id and retry.json()["status"] == "succeeded"
    assert charges(created.id).count() == 1


def test_a_refund_retried_after_a_5xx_refunds_once(api, monkeypatch):
    payment = pay(api)
    crash_once(monkeypatch, payments_api, "Response")
    path = f"/api/v1/payments/{payment['id']}/refunds"
    assert_crashed(api.post(path, {"amount": 500}, headers=key("k-refund")))

    retry = api.post(path, {"amount": 500}, headers=key("k-refund"))

    (refund,) = Refund.objects.filter(intent_id=payment["id"])
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert retry.json()["id"] == refund.id
    assert (retry.json()["amount"], retry.json()["status"]) == (500, "succeeded")
    assert list(
        SimulatorRefund.objects.filter(charge__attempt_id__startswith=payment["id"]).values_list(
            "amount", flat=True
        )
    ) == [500]
    assert PaymentIntent.objects.get(pk=payment["id"]).amount_refunded == 500


def test_a_capture_retried_after_its_answer_was_lost_answers_the_captured_payment(api, monkeypatch):
    payment = pay(api, capture_method="manual")
    calls: list[str] = []
    real_capture = SimulatorGateway.capture

    def counted(self, **kwargs):
        calls.append(kwargs["attempt_id"])
        return real_capture(self, **kwargs)

    monkeypatch.setattr(SimulatorGateway, "capture", counted)
    crash_once(monkeypatch, payments_api, "Response")
    path = f"/api/v1/payments/{payment['id']}/capture"
    assert_crashed(api.post(path, {}, headers=key("k-capture")))

    retry = api.post(path, {}, headers=key("k-capture"))

    assert payment["status"] == "requires_capture"
    assert retry.status_code == 200 and retry.get("Idempotent-Replayed") == "true"
    assert (retry.json()["id"], retry.json()["status"], retry.json()["amount_received"]) == (
        payment["id"],
        "succeeded",
        2000,
    )
    assert calls == [f"{payment['id']}_1"]
    (charge,) = charges(payment["id"])
    assert (charge.status, charge.amount_captured) == ("captured", 2000)


def test_a_capture_retried_after_a_5xx_before_it_ran_captures(api, monkeypatch):
    payment = pay(api, capture_method="manual")
    fail_once(monkeypatch, payments_api, "payment_capture", APIException("the database went away"))
    path = f"/api/v1/payments/{payment['id']}/capture"
    first = api.post(path, {}, headers=key("k-capture-early"))

    retry = api.post(path, {}, headers=key("k-capture-early"))

    assert first.status_code == 500
    assert retry.status_code == 200 and retry.json()["status"] == "succeeded"
    assert charges(payment["id"]).get().status == "captured"


def test_a_retry_after_the_process_died_with_the_gateways_answer_resolves_it_before_answering(
    api, monkeypatch
):
    # Given a first request whose process died after the simulator charged, before the answer was
    # applied: its attempt is left pending, its key in flight
    crash_once(monkeypatch, drive, "_finish")
    monkeypatch.setattr(idempotency, "idempotency_complete", lambda **_: None)
    monkeypatch.setattr(idempotency, "idempotency_release", lambda **_: None)
    assert_crashed(api.post("/api/v1/payments", BODY, headers=key("k-lost")))
    monkeypatch.undo()
    (created,) = PaymentIntent.objects.filter(amount=1234)
    assert (created.status, list(created.attempts.values_list("status", flat=True))) == (
        "processing",
        ["pending"],
    )
    assert list(charges(created.id).values_list("status", flat=True)) == ["captured"]

    # When the retry comes after the key's lock and the attempt's lease have passed
    past = timezone.now() - timedelta(seconds=1)
    IdempotencyRecord.objects.filter(key="k-lost").update(locked_until=past)
    created.attempts.update(lease_until=past)
    retry = api.post("/api/v1/payments", BODY, headers=key("k-lost"))

    # Then it asked the gateway first: the charge it found is the payment's, once, and no other
    # attempt was made
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert (retry.json()["id"], retry.json()["status"], retry.json()["last_error"]) == (
        created.id,
        "succeeded",
        None,
    )
    assert list(created.attempts.values_list("id", "status")) == [(f"{created.id}_1", "captured")]
    assert charges(created.id).count() == 1


def test_a_confirm_retried_after_its_answer_was_lost_answers_the_payment_charged_once(api, monkeypatch):
    payment = api.post("/api/v1/payments", {**BODY, "confirm": False}).json()
    crash_once(monkeypatch, payments_api, "Response")
    path = f"/api/v1/payments/{payment['id']}/confirm"
    assert_crashed(api.post(path, {}, headers=key("k-confirm")))

    retry = api.post(path, {}, headers=key("k-confirm"))

    assert charges(payment["id"]).count() == 1
    assert retry.status_code == 200 and retry.get("Idempotent-Replayed") == "true"
    assert (retry.json()["id"], retry.json()["status"]) == (payment["id"], "succeeded")


def test_a_vendor_payout_retried_after_a_crash_pays_out_once(api, monkeypatch):
    vendor = invite(api)
    enable(vendor["id"])
    pay(api, amount=10_000, splits=[{"vendor": vendor["id"], "share": "1"}])
    run_durable_tasks()
    crash_once(monkeypatch, vendors_api, "Response")
    path = f"/api/v1/vendors/{vendor['id']}/payouts"
    assert_crashed(api.post(path, headers=key("k-payout")))

    retry = api.post(path, headers=key("k-payout"))

    (payout,) = Payout.objects.filter(vendor_id=vendor["id"])
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert [(p["id"], p["amount"]) for p in retry.json()["data"]] == [(payout.id, payout.amount)]


def waiting_on_a_lock() -> int:
    """How many other sessions wait for a row lock of an idempotency record."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s AND pid <> pg_backend_pid()",
            ["%api_idempotencyrecord%"],
        )
        return cursor.fetchone()[0]


def test_two_retries_of_a_dead_key_at_once_one_resumes_the_other_is_409(committed, tenant_a, monkeypatch):
    name = f"k-race-{uuid.uuid4().hex[:8]}"
    body = {**BODY, "description": name}
    with tenant_context(tenant_a):
        GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
        for gateway in ("primary", "secondary"):
            CircuitBreaker(gateway).reset()
    api_key, raw = api_key_create(tenant=tenant_a, name="idempotency race")
    client = ApiClient("alpha.localhost", raw)
    # the first request died after creating the payment; its lock has passed
    crash_once(monkeypatch, payments_api, "Response")
    monkeypatch.setattr(idempotency, "idempotency_complete", lambda **_: None)
    monkeypatch.setattr(idempotency, "idempotency_release", lambda **_: None)
    assert_crashed(client.post("/api/v1/payments", body, headers=key(name)))
    monkeypatch.undo()
    with tenant_context(tenant_a):
        IdempotencyRecord.objects.filter(key=name).update(locked_until=timezone.now() - timedelta(seconds=1))

    # the first retry takes the key over and holds the record's row lock until the second waits
    taking_over, go_on = threading.Event(), threading.Event()
    real_save = IdempotencyRecord.save

    def save(self, *args, **kwargs):
        if threading.current_thread().name == "retry-1":
            taking_over.set()
            go_on.wait(30)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(IdempotencyRecord, "save", save)
    answers: dict[str, Any] = {}

    def retry(thread_name: str) -> None:
        try:
            answers[thread_name] = client.post("/api/v1/payments", body, headers=key(name))
        finally:
            connection.close()

    first = threading.Thread(target=retry, args=("retry-1",), name="retry-1")
    second = threading.Thread(target=retry, args=("retry-2",), name="retry-2")
    try:
        first.start()
        assert taking_over.wait(30)
        second.start()
        wait_for(lambda: waiting_on_a_lock() >= 1)
    finally:
        go_on.set()
        first.join(30)
        second.join(30)
    api_key_revoke(key=api_key)

    won, lost = answers["retry-1"], answers["retry-2"]
    assert won.status_code == 201 and won.get("Idempotent-Replayed") == "true"
    assert lost.status_code == 409 and lost.json()["error"]["code"] == "idempotency_key_in_use"
    with tenant_context(tenant_a):
        (created,) = PaymentIntent.objects.filter(description=name)
        assert won.json()["id"] == created.id
        assert charges(created.id).count() == 1


def test_a_payment_whose_database_connection_died_mid_request_is_resumed_at_once(
    committed, tenant_a, monkeypatch
):
    """The reproduced case: PostgreSQL restarted after the payment committed, the request answered
    500. The record is still stored (on a new connection), so the retry resumes at once."""
    name = f"k-dbdrop-{uuid.uuid4().hex[:8]}"
    body = {**BODY, "description": name}
    with tenant_context(tenant_a):
        GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
        for gateway in ("primary", "secondary"):
            CircuitBreaker(gateway).reset()
    api_key, raw = api_key_create(tenant=tenant_a, name="idempotency db drop")
    client = ApiClient("alpha.localhost", raw)

    def connection_dropped(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr(payments_api, "Response", connection_dropped)
    assert_crashed(client.post("/api/v1/payments", body, headers=key(name)))
    monkeypatch.undo()
    # A server closes a connection that failed when the request ends (close_old_connections); the
    # test client leaves that to us.
    connection.close()

    retry = client.post("/api/v1/payments", body, headers=key(name))
    api_key_revoke(key=api_key)

    with tenant_context(tenant_a):
        (created,) = PaymentIntent.objects.filter(description=name)
        assert charges(created.id).count() == 1
    assert retry.status_code == 201 and retry.get("Idempotent-Replayed") == "true"
    assert (retry.json()["id"], retry.json()["status"]) == (created.id, "succeeded")
