"""Voiding an invoice (directly, or by cancelling its subscription) cancels its unused payment,
and never inside the void's database transaction: cancelling may call the payment's gateway."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.billing import invoices
from apps.billing.models import Invoice
from apps.billing.services import invoice_void, subscription_cancel
from apps.payments.models import PaymentIntent
from tests.billing.conftest import monthly_price, run_tasks, subscribe


@pytest.mark.parametrize("how", ["invoice_void", "subscription_cancel"])
def test_a_voided_invoices_payment_is_canceled_with_no_transaction_open(billing, monkeypatch, how):
    # given an open invoice whose payment waits for 3-D Secure at the gateway
    sub = subscribe(monthly_price(), card="pm_card_authenticationRequired")
    inv = Invoice.objects.get(subscription_id=sub.id)
    assert (inv.status, PaymentIntent.objects.get(pk=inv.payment_id).status) == ("open", "requires_action")
    baseline = len(connection.atomic_blocks)  # the test's own transaction
    calls = []
    cancel = invoices.payment_cancel

    def watched_cancel(**kwargs):
        calls.append((kwargs["intent_id"], len(connection.atomic_blocks) - baseline))
        return cancel(**kwargs)

    monkeypatch.setattr(invoices, "payment_cancel", watched_cancel)

    # when it is voided
    if how == "invoice_void":
        invoice_void(invoice_id=inv.id)
    else:
        subscription_cancel(subscription_id=sub.id)
    run_tasks()

    # then its payment was canceled once, with no transaction of billing's open
    inv.refresh_from_db()
    assert inv.status == "void"
    assert calls == [(inv.payment_id, 0)]
    assert PaymentIntent.objects.get(pk=inv.payment_id).status == "canceled"
    run_tasks()
    assert len(calls) == 1  # the durable cancel ran once
