"""Payments reaches the vendors' split of a payment only through the hooks vendors registers at
start-up (``apps.payments.hooks``); without them (vendors not installed) payments works without
splits."""

from __future__ import annotations

import pytest

from apps.ledger.models import LedgerEvent
from apps.payments import hooks
from apps.payments.models import PaymentIntent
from apps.payments.services import PaymentError, payment_confirm, payment_intent_create, payment_refund
from apps.vendors.payment_hooks import VendorSplits


@pytest.fixture
def no_split_hooks():
    registered = hooks.splits_hooks()
    hooks.splits_register(None)
    yield
    hooks.splits_register(registered)


def test_vendors_registers_its_split_hooks_at_start_up():
    assert isinstance(hooks.splits_hooks(), VendorSplits)


def test_without_split_hooks_a_payment_with_splits_is_refused_before_anything_is_written(
    mesh, no_split_hooks
):
    with pytest.raises(PaymentError) as refused:
        payment_intent_create(
            amount=1000,
            currency="usd",
            payment_method="pm_card_visa",
            splits=[{"vendor": "ven_x", "amount": 1000}],
        )

    assert (refused.value.code, refused.value.param) == ("parameter_unknown", "splits")
    assert not PaymentIntent.objects.exists()


def test_without_split_hooks_a_split_payments_money_is_the_platforms(mesh, no_split_hooks):
    # given a payment recorded with a split (while vendors was installed)
    intent = payment_intent_create(amount=1000, currency="usd", payment_method="pm_card_visa")
    PaymentIntent.objects.filter(pk=intent.pk).update(has_splits=True)

    # when it is captured and partly refunded
    assert payment_confirm(intent_id=intent.id).status == "succeeded"
    assert payment_refund(intent_id=intent.id, amount=400).status == "succeeded"

    # then the platform took the money and bears the refund
    captured = LedgerEvent.objects.get(stream=intent.id, type="ChargeCaptured")
    refunded = LedgerEvent.objects.get(stream=intent.id, type="RefundSucceeded")
    assert captured.payload["allocations"] == [{"account": "platform_revenue", "amount": 1000}]
    assert refunded.payload["allocations"] == [{"account": "refunds", "amount": 400}]
