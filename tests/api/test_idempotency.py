from __future__ import annotations

import json
from datetime import timedelta

from django.utils import timezone

from apps.api.idempotency import idempotency_claim, idempotency_cleanup, request_fingerprint
from apps.api.models import IdempotencyRecord
from apps.core.jobs import registered_jobs
from apps.payments.models import PaymentIntent

BODY = {"amount": 777, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


def test_same_key_and_body_replays_the_first_response(api):
    first = api.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-replay"})
    # the same JSON in another key order is the same request
    again = api.post(
        "/api/v1/payments", dict(reversed(list(BODY.items()))), headers={"Idempotency-Key": "k-replay"}
    )

    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert PaymentIntent.objects.filter(amount=777).count() == 1


def test_same_key_with_another_body_or_path_is_400(api):
    api.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-mismatch"})

    other_body = api.post(
        "/api/v1/payments", {**BODY, "amount": 778}, headers={"Idempotency-Key": "k-mismatch"}
    )
    other_path = api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "k-mismatch"})

    for response in (other_body, other_path):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "idempotency_error"
        assert response.json()["error"]["code"] == "idempotency_error"
    assert PaymentIntent.objects.filter(amount=778).count() == 0


def test_key_in_flight_is_409_until_its_lock_expires(api):
    claim = idempotency_claim(
        api_key_id=api.key.pk,
        key="k-flight",
        method="POST",
        path="/api/v1/payments",
        fingerprint=request_fingerprint(
            method="POST", path="/api/v1/payments", body=json.dumps(BODY).encode()
        ),
    )

    busy = api.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-flight"})
    IdempotencyRecord.objects.filter(pk=claim.record.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    taken_over = api.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-flight"})

    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "idempotency_key_in_use"
    assert PaymentIntent.objects.filter(amount=777).count() == 1
    assert taken_over.status_code == 201
    assert IdempotencyRecord.objects.get(pk=claim.record.pk).status == "complete"


def test_rejected_input_is_not_remembered(api):
    bad = api.post("/api/v1/payments", {**BODY, "amount": "lots"}, headers={"Idempotency-Key": "k-fix"})
    fixed = api.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-fix"})

    assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed


def test_a_refused_request_is_replayed_too(api):
    payment = api.post("/api/v1/payments", BODY).json()

    first = api.post(f"/api/v1/payments/{payment['id']}/capture", headers={"Idempotency-Key": "k-409"})
    again = api.post(f"/api/v1/payments/{payment['id']}/capture", headers={"Idempotency-Key": "k-409"})

    assert first.status_code == 409
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_keys_are_scoped_per_api_key(api, restricted_api):
    other = restricted_api({})

    mine = api.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-shared"})
    theirs = other.post("/api/v1/payments", BODY, headers={"Idempotency-Key": "k-shared"})

    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


def test_invalid_key_is_refused(api):
    response = api.post("/api/v1/customers", {}, headers={"Idempotency-Key": "x" * 256})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_invalid"


def test_records_are_kept_a_day_then_cleaned_up(api):
    api.post("/api/v1/customers", {}, headers={"Idempotency-Key": "k-old"})
    api.post("/api/v1/customers", {}, headers={"Idempotency-Key": "k-new"})
    IdempotencyRecord.objects.filter(key="k-old").update(created_at=timezone.now() - timedelta(hours=25))
    IdempotencyRecord.objects.filter(key="k-new").update(created_at=timezone.now() - timedelta(hours=23))

    deleted = idempotency_cleanup()

    assert deleted == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-new"]
    import apps.api.tasks  # noqa: F401  (registers at import, as the worker does)

    assert "api.idempotency_cleanup" in {job.task_name for job in registered_jobs()}
