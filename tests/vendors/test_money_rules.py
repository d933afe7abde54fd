"""The pure money rules of the funds flow, without the database: the dispute split and what can be
taken back from a connected account (apps/vendors/splits.py), and the plans the funds flow works
out before it writes (apps/vendors/funds.py: where a refund comes from, the transfers a capture
makes, a lost dispute's clawbacks, when a payout is due)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.vendors.funds import (
    RefundSource,
    dispute_clawbacks,
    payout_due,
    refund_postings,
    refund_sources,
    transfers_owed,
)
from apps.vendors.models import Transfer
from apps.vendors.splits import (
    Allocation,
    CommissionTerms,
    SplitError,
    SplitLine,
    SplitPlan,
    VendorPart,
    allocation_postings,
    kept_back,
    reclaimable,
    split_allocate,
    split_dispute,
    split_refund_unwind,
    vendor_owed,
)
from tests.vendors.test_splits import captures

PROPERTY = settings(max_examples=200, deadline=None)

# 6000 / 4000 at 10% commission, the platform bearing a fee of 300
ALLOCATION = Allocation(
    amount=10_000,
    currency="USD",
    processor_fee=300,
    parts=(VendorPart("ven_a", 6000, 600, 0, 5400), VendorPart("ven_b", 4000, 400, 0, 3600)),
)


# --------------------------------------------------------------------------- the dispute split


def test_a_dispute_is_split_by_the_parts_then_between_vendor_and_commission():
    # given a dispute of 5000 on a payment split 6000 / 4000 at 10%
    dispute = split_dispute(ALLOCATION, amount=5000)
    # then 3000 / 2000 by the parts, 10% of each out of the commission
    assert [(p.vendor_id, p.debit, p.commission) for p in dispute.parts] == [
        ("ven_a", 2700, 300),
        ("ven_b", 1800, 200),
    ]
    assert dispute.commission == 500


def test_a_dispute_of_a_vendor_with_nothing_left_after_commission():
    allocation = Allocation(
        amount=100, currency="USD", processor_fee=0, parts=(VendorPart("ven_a", 100, 100, 0, 0),)
    )
    assert [(p.debit, p.commission) for p in split_dispute(allocation, amount=40).parts] == [(0, 40)]


@PROPERTY
@given(captures(), st.data())
def test_a_dispute_split_sums_exactly_and_is_never_negative(case, data):
    plan, captured, fee = case
    allocation = split_allocate(plan, captured=captured, processor_fee=fee)
    amount = data.draw(st.integers(1, captured))
    dispute = split_dispute(allocation, amount=amount)
    assert sum(p.debit + p.commission for p in dispute.parts) == amount
    assert all(p.debit >= 0 and p.commission >= 0 for p in dispute.parts)
    for part, taken in zip(allocation.parts, dispute.parts, strict=True):
        assert taken.vendor_id == part.vendor_id
        assert taken.commission <= part.commission or part.gross == 0
    if amount == captured:  # the whole payment disputed: each vendor's part exactly
        assert [p.debit + p.commission for p in dispute.parts] == [p.gross for p in allocation.parts]


@pytest.mark.parametrize("amount", [0, -1, True, 1.5])
def test_a_dispute_amount_must_be_a_positive_integer(amount):
    with pytest.raises(SplitError) as refused:
        split_dispute(ALLOCATION, amount=amount)
    assert (refused.value.code, refused.value.param) == ("dispute_amount_invalid", "amount")


# --------------------------------------------------------------------------- connected accounts


@pytest.mark.parametrize(
    ("debit", "in_account", "available", "taken"),
    [
        (500, 1000, 2000, 500),  # all of it
        (500, 300, 2000, 300),  # at most what is still in the account
        (500, 1000, 200, 200),  # at most what the vendor has available
        (500, 1000, -50, 0),  # a vendor in debt: nothing (the debit stays a debt)
        (500, 0, 2000, 0),  # nothing left there (reversed or kept back already)
    ],
)
def test_what_is_taken_back_from_a_connected_account(debit, in_account, available, taken):
    assert reclaimable(debit, in_account=in_account, available=available) == taken


@pytest.mark.parametrize(
    ("amount", "available", "kept"), [(1000, 500, 0), (1000, 0, 0), (1000, -300, 300), (1000, -5000, 1000)]
)
def test_a_vendor_in_debt_has_it_kept_back_from_its_next_transfer(amount, available, kept):
    assert kept_back(amount, available=available) == kept


# --------------------------------------------------------------------------- capture and refunds


def test_the_capture_posts_nets_to_pending_commission_and_fees_the_vendors_bear():
    allocation = Allocation(
        amount=10_000,
        currency="USD",
        processor_fee=300,
        parts=(VendorPart("ven_a", 6000, 600, 180, 5220), VendorPart("ven_b", 4000, 4000, 0, 0)),
    )
    assert allocation_postings(allocation) == [
        {"account": "vendor_pending:ven_a", "amount": 5220},
        {"account": "platform_revenue", "amount": 4600},
        {"account": "processor_fees", "amount": 180},
    ]
    assert sum(line["amount"] for line in allocation_postings(allocation)) == allocation.amount


def test_transfers_owed_are_the_nets_less_earlier_refunds():
    refund = split_refund_unwind(ALLOCATION, amount=7000)  # takes 3780 / 2520 from the vendors
    assert vendor_owed(ALLOCATION, "ven_a", previous=[refund]) == 5400 - 3780
    assert transfers_owed(ALLOCATION, previous=[]) == [("ven_a", 5400), ("ven_b", 3600)]
    assert transfers_owed(ALLOCATION, previous=[refund]) == [("ven_a", 1620), ("ven_b", 1080)]
    everything = split_refund_unwind(ALLOCATION, amount=10_000)
    assert transfers_owed(ALLOCATION, previous=[everything]) == []


def transfer(status: str, amount: int) -> Transfer:
    return Transfer(status=status, amount=amount)


def test_a_refund_comes_from_money_still_waiting_then_from_the_available_balance():
    unwind = split_refund_unwind(ALLOCATION, amount=5000)  # debits 2700 / 1800, commission 500
    # given ven_a's transfer is held (900 of it left) and ven_b's was paid
    transfers = {"ven_a": transfer("held", 900), "ven_b": transfer("paid", 3600)}
    sources = refund_sources(unwind, allocation=ALLOCATION, previous=[], transfers=transfers)
    assert sources == [
        RefundSource("ven_a", "vendor_held:ven_a", 900, 1800),
        RefundSource("ven_b", "vendor_pending:ven_b", 0, 1800),
    ]
    assert refund_postings(sources, unwind) == [
        {"account": "vendor_held:ven_a", "amount": 900},
        {"account": "vendor_payable:ven_a", "amount": 1800},
        {"account": "vendor_payable:ven_b", "amount": 1800},
        {"account": "platform_revenue", "amount": 500},
    ]


def test_a_refund_before_any_transfer_comes_from_pending():
    unwind = split_refund_unwind(ALLOCATION, amount=1000)
    sources = refund_sources(unwind, allocation=ALLOCATION, previous=[], transfers={})
    assert [(s.account, s.covered, s.rest) for s in sources] == [
        ("vendor_pending:ven_a", 540, 0),
        ("vendor_pending:ven_b", 360, 0),
    ]
    assert sum(line["amount"] for line in refund_postings(sources, unwind)) == 1000


def test_the_clawbacks_of_a_lost_dispute():
    allocations = [
        {"account": "vendor_payable:ven_a", "amount": 2700, "clawback": 2000},
        {"account": "vendor_payable:ven_b", "amount": 1800},
        {"account": "platform_revenue", "amount": 500, "clawback": 9},
    ]
    assert dispute_clawbacks(allocations) == [("ven_a", 2000)]


# --------------------------------------------------------------------------- payouts


T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "since_last", "due"),
    [
        ("daily", None, True),
        ("daily", timedelta(hours=23), False),
        ("daily", timedelta(days=1), True),
        ("weekly", timedelta(days=6), False),
        ("weekly", timedelta(days=7), True),
        ("monthly", timedelta(days=29), False),
        ("monthly", timedelta(days=30), True),
    ],
)
def test_a_payout_is_due_once_per_interval(schedule, since_last, due):
    last = None if since_last is None else T0 - since_last
    assert payout_due(schedule, last=last, now=T0) is due


def test_the_allocation_above_is_what_split_allocate_makes():
    terms = CommissionTerms(percent_bps=1000)
    plan = SplitPlan(
        10_000,
        "USD",
        "amount",
        (SplitLine("ven_a", 6000, terms, amount=6000), SplitLine("ven_b", 4000, terms, amount=4000)),
    )
    assert split_allocate(plan, captured=10_000, processor_fee=300) == ALLOCATION
