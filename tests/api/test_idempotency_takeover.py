"""The takeover of a dead request's key is safe even when that request was only slow: when it
reaches its recovery point after a retry took the key over, what it was creating rolls back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.api.idempotency import idempotency_binder, idempotency_claim, request_fingerprint
from apps.api.models import IdempotencyRecord
from apps.core.recovery import RecoveryConflict, recovery_binder
from apps.payments.models import PaymentIntent, SimulatorCharge
from apps.payments.services import payment_intent_create


def test_a_request_whose_key_was_taken_over_creates_nothing(api):
    fingerprint = request_fingerprint(method="POST", path="/api/v1/payments", body=b"{}")
    claim = dict(api_key_id=api.key.pk, key="k-slow", method="POST", path="/api/v1/payments")
    slow = idempotency_claim(**claim, fingerprint=fingerprint, resumable=True)
    IdempotencyRecord.objects.filter(pk=slow.record.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    retry = idempotency_claim(**claim, fingerprint=fingerprint, resumable=True)

    # the first request, still alive, reaches its recovery point after the retry took the key over
    with recovery_binder(idempotency_binder(record=slow.record)), pytest.raises(RecoveryConflict):
        payment_intent_create(amount=4321, currency="usd", payment_method="pm_card_visa", confirm=True)

    assert retry.action == "run" and retry.record.owner != slow.record.owner
    assert not PaymentIntent.objects.filter(amount=4321).exists()
    assert not SimulatorCharge.objects.filter(amount=4321).exists()


def test_recovery_points_outside_a_request_do_nothing_and_inside_one_bind_the_first_object(api):
    fingerprint = request_fingerprint(method="POST", path="/api/v1/payments", body=b"{}")
    claim = idempotency_claim(
        api_key_id=api.key.pk, key="k-bind", method="POST", path="/api/v1/payments", fingerprint=fingerprint
    )
    outside = payment_intent_create(amount=4322, currency="usd", payment_method="pm_card_visa")

    with recovery_binder(idempotency_binder(record=claim.record)):
        first = payment_intent_create(amount=4323, currency="usd", payment_method="pm_card_visa")
        payment_intent_create(amount=4324, currency="usd", payment_method="pm_card_visa")

    record = IdempotencyRecord.objects.get(pk=claim.record.pk)
    assert outside.status == "requires_confirmation"
    assert (record.resource_type, record.resource_ids) == ("payment", [first.id])
