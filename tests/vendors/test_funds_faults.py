"""Transfers, reversals and payouts under faults, against a stateful Stripe Connect at the HTTP
layer (``connect_fake``): no database transaction is open while Stripe is asked; an answer that
was lost, or applied by a commit that failed, is resolved from what Stripe has (never assumed
refused, never sent twice), even after Stripe forgot the idempotency key (24 h)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
import time_machine
from django.db import OperationalError
from django.utils import timezone

from apps.core.jobs import registered_jobs
from apps.ledger.models import LedgerEvent
from apps.ledger.selectors import balance_get
from apps.payments.services import payment_refund
from apps.vendors import funds
from apps.vendors.models import Payout, Transfer, TransferReversal
from tests.ledger.observe import nets_from_replay, nonzero_balances
from tests.support import run_durable_tasks as run_tasks
from tests.vendors.connect_fake import FakeConnect
from tests.vendors.test_funds import lines_of, market, pay, real_vendor, stripe_gateway  # noqa: F401

ACCOUNT = "acct_1PgafTB7WZ01zgkW"


@pytest.fixture
def stripe(market):  # noqa: F811
    """The marketplace's Stripe account, a vendor with a real connected account, and Stripe."""
    stripe_gateway()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeConnect(rsps)


def later(hours: float):
    """The clock moved on (the durable tasks' backoff has passed; after 24 h Stripe has forgotten
    the idempotency keys it saw)."""
    return time_machine.travel(timezone.now() + timedelta(hours=hours), tick=False)


def books_match_stripe(fake: FakeConnect) -> None:
    """What our books say sits in connected accounts is what Stripe moved there and not back or
    out (transfers less reversals and payouts), and the balances are the events' sum."""
    at_stripe = (
        sum(t["amount"] for t in fake.transfers)
        - sum(r["amount"] for r in fake.reversals)
        - sum(p["amount"] for p in fake.payouts)
    )
    assert balance_get(code="connected_balances", currency="USD") == at_stripe
    assert nonzero_balances() == nets_from_replay()


# --------------------------------------------------------------------------- no transaction open


def test_transfers_reversals_and_payouts_ask_stripe_with_no_transaction_open(stripe):
    vendor = real_vendor(enabled=True)
    intent = pay([{"vendor": vendor.id, "amount": 10_000}])

    run_tasks()  # the transfer
    payment_refund(intent_id=intent.id, amount=2000)
    run_tasks()  # the reversal of the vendor's 1800
    funds.vendor_payout_create(vendor_id=vendor.id, manual=True)
    run_tasks()  # the payout of the 7200 left

    assert stripe.depths == [("transfer_create", 0), ("transfer_reverse", 0), ("payout_create", 0)]
    transfer = Transfer.objects.get(payment_id=intent.id)
    assert (transfer.status, transfer.stripe_transfer_id, transfer.amount_reversed) == (
        "paid",
        stripe.transfers[0]["id"],
        1800,
    )
    assert TransferReversal.objects.get().status == "succeeded"
    assert Payout.objects.get().stripe_payout_id == stripe.payouts[0]["id"]
    books_match_stripe(stripe)


# --------------------------------------------------------------------------- unknown outcomes


def test_a_transfer_whose_answer_was_lost_stays_sending_and_is_resolved_to_the_one_stripe_made(stripe):
    vendor = real_vendor(enabled=True)
    intent = pay([{"vendor": vendor.id, "amount": 10_000}])
    stripe.fault("transfer_create", "lost")  # Stripe made it; the answer timed out

    run_tasks()

    transfer = Transfer.objects.get(payment_id=intent.id)
    assert (transfer.status, transfer.stripe_transfer_id) == ("sending", "")  # neither failed nor paid
    assert not LedgerEvent.objects.filter(type="TransferPaid").exists()
    with later(hours=25):  # the workers were down for a day: Stripe forgot the idempotency key
        run_tasks()

    transfer.refresh_from_db()
    assert len(stripe.transfers) == 1  # found by its metadata, not made again
    assert (transfer.status, transfer.stripe_transfer_id) == ("paid", stripe.transfers[0]["id"])
    assert [op for op, _ in stripe.depths] == ["transfer_create", "transfer_list"]
    assert {depth for _, depth in stripe.depths} == {0}
    assert LedgerEvent.objects.filter(type="TransferPaid").count() == 1
    books_match_stripe(stripe)


def test_a_transfer_whose_commit_failed_after_stripe_made_it_is_found_by_the_reconcile_job(
    stripe, monkeypatch
):
    vendor = real_vendor(enabled=True)
    intent = pay([{"vendor": vendor.id, "amount": 10_000}])
    real_publish = funds.event_publish
    failures: list[dict] = []

    def publish_then_lose_the_commit(**kwargs):
        real_publish(**kwargs)
        if not failures:
            failures.append(kwargs)
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(funds, "event_publish", publish_then_lose_the_commit)

    run_tasks()  # Stripe made the transfer; applying its answer did not commit

    transfer = Transfer.objects.get(payment_id=intent.id)
    assert transfer.status == "sending" and len(stripe.transfers) == 1
    import apps.vendors.tasks  # noqa: F401  (registers its jobs at import, as the worker does)

    assert "vendors.funds_reconcile" in {job.task_name for job in registered_jobs()}
    with later(hours=25):
        # the task ran out of attempts meanwhile: only the reconcile job can find the transfer
        from apps.core.models import DurableTask

        DurableTask.objects.filter(handler="apps.vendors.funds.transfer_send").update(state="failed")
        assert funds.funds_reconcile() == 1
        assert funds.funds_reconcile() == 0  # queued once
        run_tasks()

    transfer.refresh_from_db()
    assert len(stripe.transfers) == 1
    assert transfer.status == "paid" and transfer.stripe_transfer_id == stripe.transfers[0]["id"]
    assert lines_of("TransferPaid", transfer.id) == [
        (f"vendor_pending:{vendor.id}", "D", 9000),
        (f"vendor_payable:{vendor.id}", "C", 9000),
        ("connected_balances", "D", 9000),
        ("processor_clearing:primary", "C", 9000),
    ]
    assert LedgerEvent.objects.filter(type="TransferPaid").count() == 1
    books_match_stripe(stripe)


def test_a_transfer_stripe_could_not_be_reached_for_is_retried_with_backoff_not_failed(stripe):
    vendor = real_vendor(enabled=True)
    intent = pay([{"vendor": vendor.id, "amount": 10_000}])
    stripe.fault("transfer_create", "down", "down")

    run_tasks()
    with later(hours=0.1):
        run_tasks()
    assert Transfer.objects.get(payment_id=intent.id).status == "sending"
    with later(hours=1):
        run_tasks()

    assert Transfer.objects.get(payment_id=intent.id).status == "paid"
    assert len(stripe.transfers) == 1
    books_match_stripe(stripe)


def test_a_payout_whose_answer_was_lost_is_resolved_to_the_one_stripe_made(stripe):
    vendor = real_vendor(enabled=True)
    pay([{"vendor": vendor.id, "amount": 10_000}])
    run_tasks()
    stripe.fault("payout_create", "lost")

    (payout,) = funds.vendor_payout_create(vendor_id=vendor.id, manual=True)
    run_tasks()

    payout.refresh_from_db()
    assert (payout.status, payout.stripe_payout_id) == ("pending", "")  # unknown: not failed
    assert payout.sending_since is not None
    assert not LedgerEvent.objects.filter(type="PayoutFailed").exists()
    with later(hours=25):
        run_tasks()

    payout.refresh_from_db()
    assert len(stripe.payouts) == 1
    assert (payout.status, payout.stripe_payout_id) == ("pending", stripe.payouts[0]["id"])
    assert [op for op, _ in stripe.depths] == ["transfer_create", "payout_create", "payout_list"]
    assert {depth for _, depth in stripe.depths} == {0}
    assert balance_get(code=f"vendor_payable:{vendor.id}", currency="USD") == 0


def test_a_reversal_whose_answer_was_lost_is_resolved_to_the_one_stripe_made(stripe, host_client):
    vendor = real_vendor(enabled=True)
    intent = pay([{"vendor": vendor.id, "amount": 10_000}])
    run_tasks()
    stripe.fault("transfer_reverse", "lost")

    refund = payment_refund(intent_id=intent.id, amount=10_000)
    run_tasks()

    reversal = TransferReversal.objects.get()
    assert (reversal.status, reversal.amount, reversal.refund_id) == ("sending", 9000, refund.id)
    with later(hours=25):
        run_tasks()

    reversal.refresh_from_db()
    assert len(stripe.reversals) == 1
    assert (reversal.status, reversal.stripe_reversal_id) == ("succeeded", stripe.reversals[0]["id"])
    assert LedgerEvent.objects.filter(type="TransferReversed").count() == 1
    assert balance_get(code=f"vendor_payable:{vendor.id}", currency="USD") == 0
    books_match_stripe(stripe)
    operator = host_client("alpha.localhost")
    assert operator.login(username="ops@alpha.test", password="test-password-123")
    assert reversal.id in operator.get("/admin/vendors/transferreversal/").content.decode()


def test_a_refund_while_the_transfer_is_sending_reverses_it_once_it_lands(stripe):
    vendor = real_vendor(enabled=True)
    intent = pay([{"vendor": vendor.id, "amount": 10_000}])
    stripe.fault("transfer_create", "lost")
    run_tasks()  # the transfer is sending

    payment_refund(intent_id=intent.id, amount=10_000)
    run_tasks()
    assert TransferReversal.objects.get().status == "pending"  # waits for the transfer
    with later(hours=1):
        run_tasks()

    assert Transfer.objects.get(payment_id=intent.id).status == "paid"
    assert TransferReversal.objects.get().status == "succeeded"
    assert (len(stripe.transfers), len(stripe.reversals)) == (1, 1)
    assert stripe.reversals[0]["amount"] == 9000
    assert balance_get(code=f"vendor_payable:{vendor.id}", currency="USD") == 0
    assert balance_get(code=f"vendor_pending:{vendor.id}", currency="USD") == 0
    books_match_stripe(stripe)
