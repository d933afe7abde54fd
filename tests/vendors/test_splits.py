"""The split rules (apps/vendors/splits.py): properties over many plans in currencies with 0, 2
and 3 decimals, worked examples with exact numbers, and every validation error. No database."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.vendors.splits import (
    Allocation,
    CommissionTerms,
    FeePolicy,
    RefundUnwind,
    SplitError,
    SplitLine,
    SplitPlan,
    VendorTerms,
    commission_for,
    format_bps,
    parse_share,
    split_allocate,
    split_plan_validate,
    split_refund_unwind,
)

PROPERTY = settings(max_examples=200, deadline=None)
CURRENCIES = ["JPY", "USD", "KWD", "BHD"]  # exponents 0, 2, 3, 3

DEFAULT = CommissionTerms(percent_bps=1000)


def vendor(vendor_id: str, currency: str = "usd", status: str = "active", **terms: Any) -> VendorTerms:
    return VendorTerms(vendor_id=vendor_id, status=status, currency=currency, **terms)


VENDORS = {
    "ven_a": vendor("ven_a"),
    "ven_b": vendor("ven_b"),
    "ven_c": vendor("ven_c"),
    "ven_off": vendor("ven_off", status="disabled"),
    "ven_eur": vendor("ven_eur", currency="eur"),
    "ven_new": vendor("ven_new", status="invited"),
}


def validate(raw: object, amount: int = 10_000, currency: str = "usd", policy: CommissionTerms = DEFAULT):
    return split_plan_validate(raw, amount=amount, currency=currency, vendors=VENDORS, policy=policy)


def one_vendor_plan(amount: int, terms: CommissionTerms, currency: str = "USD") -> SplitPlan:
    return SplitPlan(amount, currency, "amount", (SplitLine("ven_a", amount, terms, amount=amount),))


# --------------------------------------------------------------------------- strategies

terms_strategy = st.builds(
    lambda bps, fixed, policy: (bps, fixed, policy),
    st.integers(0, 10_000),
    st.one_of(st.none(), st.integers(0, 500)),
    st.sampled_from(list(FeePolicy)),
)


@st.composite
def plans(draw: st.DrawFn) -> SplitPlan:
    """A plan as ``split_plan_validate`` would return it, but terms drawn freely: fixed fees may
    exceed a part (the allocation clamps; validation would have refused the plan)."""
    currency = draw(st.sampled_from(CURRENCIES))
    n = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["amount", "share"]))
    weights = draw(st.lists(st.integers(1, 10**7), min_size=n, max_size=n))
    lines = []
    for i, w in enumerate(weights):
        bps, fixed, policy = draw(terms_strategy)
        terms = CommissionTerms(
            percent_bps=bps, fixed={} if fixed is None else {currency.lower(): fixed}, fee_policy=policy
        )
        if kind == "amount":
            lines.append(SplitLine(f"ven_{i}", w, terms, amount=w))
        else:
            lines.append(SplitLine(f"ven_{i}", w, terms, share=Fraction(w, sum(weights))))
    return SplitPlan(sum(weights), currency, kind, tuple(lines))


@st.composite
def captures(draw: st.DrawFn) -> tuple[SplitPlan, int, int]:
    plan = draw(plans())
    captured = draw(st.one_of(st.just(plan.amount), st.integers(1, plan.amount)))
    fee = draw(st.integers(0, captured // 5 + 50))
    return plan, captured, fee


def check_allocation(allocation: Allocation, captured: int, fee: int) -> None:
    assert sum(p.gross for p in allocation.parts) == captured
    for p in allocation.parts:
        assert min(p.gross, p.commission, p.fee, p.net) >= 0
        assert p.net + p.commission + p.fee == p.gross
    assert allocation.vendor_net + allocation.platform_revenue + allocation.fee_borne_by_vendors == captured
    assert 0 <= allocation.fee_borne_by_vendors <= fee
    assert allocation.fee_borne_by_platform + allocation.fee_borne_by_vendors == fee


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(captures())
def test_parts_sum_exactly_and_are_never_negative(case):
    # given a plan, a captured amount (full or partial) and a processor fee
    plan, captured, fee = case
    # when it is allocated
    allocation = split_allocate(plan, captured=captured, processor_fee=fee)
    # then every part is >= 0 and everything adds up to the captured amount and the fee
    check_allocation(allocation, captured, fee)
    assert [p.vendor_id for p in allocation.parts] == [line.vendor_id for line in plan.lines]


@PROPERTY
@given(captures())
def test_allocation_is_deterministic_and_survives_storage(case):
    plan, captured, fee = case
    first = split_allocate(plan, captured=captured, processor_fee=fee)
    stored_plan = SplitPlan.from_dict(plan.as_dict())
    assert stored_plan == plan
    again = split_allocate(stored_plan, captured=captured, processor_fee=fee)
    assert again == first
    assert Allocation.from_dict(first.as_dict()) == first


@PROPERTY
@given(plans())
def test_a_full_capture_pays_exactly_the_planned_parts(plan):
    allocation = split_allocate(plan, captured=plan.amount)
    assert [p.gross for p in allocation.parts] == [line.planned for line in plan.lines]


@PROPERTY
@given(captures())
def test_a_partial_capture_never_raises_a_part(case):
    plan, captured, fee = case
    allocation = split_allocate(plan, captured=captured, processor_fee=fee)
    for part, line in zip(allocation.parts, plan.lines, strict=True):
        assert part.gross <= line.planned
        # within one minor unit of the exact proportional part
        assert abs(Fraction(part.gross) - Fraction(captured * line.planned, plan.amount)) < 1


@PROPERTY
@given(
    currency=st.sampled_from(CURRENCIES),
    weights=st.lists(st.integers(1, 1000), min_size=1, max_size=8),
    extra=st.integers(0, 10**9),
)
def test_shares_split_the_payment_by_largest_remainder(currency, weights, extra):
    # given shares that add up to exactly 1 and a payment big enough that none rounds to zero
    total = sum(weights)
    amount = total + extra
    vendors = {f"ven_{i}": vendor(f"ven_{i}", currency=currency) for i in range(len(weights))}
    raw = [{"vendor": f"ven_{i}", "share": f"{w}/{total}"} for i, w in enumerate(weights)]
    # when the plan is validated
    plan = split_plan_validate(
        raw, amount=amount, currency=currency, vendors=vendors, policy=CommissionTerms(percent_bps=0)
    )
    # then the planned parts sum to the payment, each within one unit of its exact share
    assert sum(plan.weights) == amount
    for line, w in zip(plan.lines, weights, strict=True):
        assert abs(Fraction(line.planned) - Fraction(amount * w, total)) < 1


@st.composite
def refund_histories(draw: st.DrawFn) -> tuple[Allocation, list[int]]:
    plan, captured, fee = draw(captures())
    allocation = split_allocate(plan, captured=captured, processor_fee=fee)
    refunds: list[int] = []
    left = captured
    for _ in range(draw(st.integers(1, 6))):
        if left == 0:
            break
        amount = draw(st.one_of(st.just(left), st.integers(1, left)))
        refunds.append(amount)
        left -= amount
    return allocation, refunds


@PROPERTY
@given(refund_histories())
def test_partial_refunds_sum_exactly_and_never_exceed_the_capture(case):
    allocation, refunds = case
    done: list[RefundUnwind] = []
    for amount in refunds:
        unwind = split_refund_unwind(allocation, amount=amount, previous=done)
        assert unwind.vendor_debits + unwind.commission_reversed == amount
        assert all(p.debit >= 0 and p.commission >= 0 for p in unwind.parts)
        done.append(unwind)
        for i, part in enumerate(allocation.parts):
            assert sum(u.parts[i].debit for u in done) <= part.gross - part.commission
            assert sum(u.parts[i].commission for u in done) <= part.commission
    if sum(refunds) == allocation.amount:
        # fully refunded (at once or in pieces): every component is unwound exactly
        for i, part in enumerate(allocation.parts):
            assert sum(u.parts[i].debit for u in done) == part.gross - part.commission
            assert sum(u.parts[i].commission for u in done) == part.commission
        with pytest.raises(SplitError) as exc:
            split_refund_unwind(allocation, amount=1, previous=done)
        assert exc.value.code == "refund_exceeds_remaining"


@PROPERTY
@given(captures())
def test_one_full_refund_unwinds_every_part_exactly(case):
    plan, captured, fee = case
    allocation = split_allocate(plan, captured=captured, processor_fee=fee)
    unwind = split_refund_unwind(allocation, amount=captured)
    for back, part in zip(unwind.parts, allocation.parts, strict=True):
        assert (back.debit, back.commission) == (part.gross - part.commission, part.commission)
    assert RefundUnwind.from_dict(unwind.as_dict()) == unwind


# --------------------------------------------------------------------------- worked examples


def test_architecture_example_platform_bears_the_fee():
    # 100.00 USD, 10% commission, 3.20 fee borne by the platform (ARCHITECTURE section 5)
    plan = validate([{"vendor": "ven_a", "amount": 10_000}])
    allocation = split_allocate(plan, captured=10_000, processor_fee=320)
    assert allocation.parts[0].as_dict() == {
        "vendor": "ven_a",
        "gross": 10_000,
        "commission": 1000,
        "fee": 0,
        "net": 9000,
    }
    assert (allocation.platform_revenue, allocation.fee_borne_by_platform, allocation.platform_net) == (
        1000,
        320,
        680,
    )


@pytest.mark.parametrize(
    ("policy", "vendor_fee", "net"),
    [(FeePolicy.PLATFORM, 0, 9000), (FeePolicy.VENDOR, 320, 8680), (FeePolicy.PRO_RATA, 288, 8712)],
)
def test_fee_policies(policy, vendor_fee, net):
    # pro rata: 3.20 shared 9000 : 1000 between vendor and platform -> 2.88 / 0.32
    terms = CommissionTerms(percent_bps=1000, fee_policy=policy)
    allocation = split_allocate(one_vendor_plan(10_000, terms), captured=10_000, processor_fee=320)
    part = allocation.parts[0]
    assert (part.commission, part.fee, part.net) == (1000, vendor_fee, net)
    assert allocation.fee_borne_by_platform == 320 - vendor_fee


def test_three_vendors_in_thirds_of_yen():
    # 1000 JPY in thirds: the odd yen goes to the first line (ties go to the earlier weight)
    vendors = {v: vendor(v, currency="jpy") for v in ("ven_a", "ven_b", "ven_c")}
    plan = split_plan_validate(
        [{"vendor": v, "share": "1/3"} for v in vendors],
        amount=1000,
        currency="JPY",
        vendors=vendors,
        policy=DEFAULT,
    )
    assert plan.weights == [334, 333, 333]
    allocation = split_allocate(plan, captured=1000, processor_fee=36)
    # 10% of 334 = 33.4 -> 33; of 333 = 33.3 -> 33; fee slices 36 by 334:333:333 -> 12, 12, 12
    assert [(p.gross, p.commission, p.fee, p.net) for p in allocation.parts] == [
        (334, 33, 0, 301),
        (333, 33, 0, 300),
        (333, 33, 0, 300),
    ]


def test_multi_vendor_with_overrides_in_usd():
    # ven_a on the default (10% + 0.30, pro rata); ven_b overrides 5% and bears fees itself
    vendors = {
        "ven_a": vendor("ven_a"),
        "ven_b": vendor("ven_b", percent_bps=500, fee_policy=FeePolicy.VENDOR),
    }
    policy = CommissionTerms(percent_bps=1000, fixed={"usd": 30}, fee_policy=FeePolicy.PRO_RATA)
    plan = split_plan_validate(
        [{"vendor": "ven_a", "share": "1/3"}, {"vendor": "ven_b", "share": "2/3"}],
        amount=10_000,
        currency="usd",
        vendors=vendors,
        policy=policy,
    )
    allocation = split_allocate(plan, captured=10_000, processor_fee=320)
    # gross 3333 / 6667; commission 333 + 30 and 333 (333.35 -> 333) + 30; fee slices 107 / 213;
    # ven_a bears 107 x 2970/3333 = 95.3 -> 95 of its slice, ven_b all of its 213
    assert [(p.gross, p.commission, p.fee, p.net) for p in allocation.parts] == [
        (3333, 363, 95, 2875),
        (6667, 363, 213, 6091),
    ]
    assert (allocation.platform_revenue, allocation.fee_borne_by_platform) == (726, 12)
    # a refund of a third, then the rest
    first = split_refund_unwind(allocation, amount=3333)
    assert [(p.debit, p.commission) for p in first.parts] == [(990, 121), (2101, 121)]
    rest = split_refund_unwind(allocation, amount=6667, previous=[first])
    assert [(p.debit, p.commission) for p in rest.parts] == [(1980, 242), (4203, 242)]


def test_three_decimal_currency_with_fixed_fee():
    # 10.000 KWD at 2.5% + 0.100 KWD
    vendors = {"ven_k": vendor("ven_k", currency="kwd", percent_bps=250, fixed={"kwd": 100})}
    plan = split_plan_validate(
        [{"vendor": "ven_k", "amount": 10_000, "currency": "KWD"}],
        amount=10_000,
        currency="kwd",
        vendors=vendors,
        policy=DEFAULT,
    )
    allocation = split_allocate(plan, captured=10_000, processor_fee=0)
    assert (allocation.parts[0].commission, allocation.parts[0].net) == (350, 9650)


@pytest.mark.parametrize(("part", "commission"), [(5, 0), (15, 2), (25, 2), (35, 4), (0, 0)])
def test_commission_percentage_rounds_half_to_even(part, commission):
    assert commission_for(part, "USD", CommissionTerms(percent_bps=1000)) == commission


def test_fixed_fee_applies_in_its_own_currency_only():
    terms = CommissionTerms(percent_bps=0, fixed={"USD": 30})
    assert (commission_for(1000, "usd", terms), commission_for(1000, "EUR", terms)) == (30, 0)


def test_partial_capture_scales_the_plan_and_clamps_the_commission():
    # plan 6.00 + 4.00; only 5.01 captured: 300.6 / 200.4 -> 301 / 200
    plan = validate([{"vendor": "ven_a", "amount": 600}, {"vendor": "ven_b", "amount": 400}], amount=1000)
    assert [p.gross for p in split_allocate(plan, captured=501).parts] == [301, 200]
    # a 0.30 fixed fee on a part scaled down to 0.20: the commission is clamped, net is 0
    terms = CommissionTerms(percent_bps=1000, fixed={"usd": 30}, fee_policy=FeePolicy.VENDOR)
    part = split_allocate(one_vendor_plan(100, terms), captured=20, processor_fee=5).parts[0]
    assert (part.gross, part.commission, part.fee, part.net) == (20, 20, 0, 0)


def test_vendor_fee_is_clamped_to_what_its_part_leaves():
    terms = CommissionTerms(percent_bps=9000, fee_policy=FeePolicy.VENDOR)
    allocation = split_allocate(one_vendor_plan(100, terms), captured=100, processor_fee=40)
    # commission 90 leaves 10: the vendor bears 10 of the 40, the platform the other 30
    assert (allocation.parts[0].fee, allocation.parts[0].net, allocation.fee_borne_by_platform) == (10, 0, 30)


def test_invited_and_onboarding_vendors_can_be_paid_into_their_balance():
    plan = validate([{"vendor": "ven_new", "amount": 10_000}])
    assert plan.lines[0].vendor_id == "ven_new"


def test_vendor_id_alias_and_currency_in_any_case():
    plan = validate([{"vendor_id": "ven_a", "amount": 10_000, "currency": "USD"}], currency="Usd")
    assert (plan.currency, plan.kind, plan.weights) == ("USD", "amount", [10_000])


def test_validated_plan_snapshots_the_terms():
    policy = CommissionTerms(percent_bps=1200, fixed={"usd": 25}, fee_policy=FeePolicy.PRO_RATA)
    vendors = {"ven_a": vendor("ven_a", fixed={}), "ven_b": vendor("ven_b", percent_bps=0)}
    plan = split_plan_validate(
        [{"vendor": "ven_a", "amount": 5000}, {"vendor": "ven_b", "amount": 5000}],
        amount=10_000,
        currency="usd",
        vendors=vendors,
        policy=policy,
    )
    assert [line.terms.as_dict() for line in plan.lines] == [
        {"percent_bps": 1200, "fixed": {}, "fee_policy": "pro_rata"},
        {"percent_bps": 0, "fixed": {"usd": 25}, "fee_policy": "pro_rata"},
    ]


@pytest.mark.parametrize(
    ("raw", "share"),
    [
        ("0.25", Fraction(1, 4)),
        (" 1/3 ", Fraction(1, 3)),
        ("2 / 3", Fraction(2, 3)),
        (1, Fraction(1)),
        ("1", Fraction(1)),
        (Decimal("0.125"), Fraction(1, 8)),
        (Fraction(5, 7), Fraction(5, 7)),
    ],
)
def test_share_formats(raw, share):
    assert parse_share(raw, param="s") == share


def test_format_bps():
    assert [format_bps(b) for b in (1000, 1250, 5, 0, 10_000)] == ["10%", "12.5%", "0.05%", "0%", "100%"]


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    ("raw", "code", "param", "message"),
    [
        ("ven_a", "split_plan_invalid", "splits", "splits must be a non-empty list"),
        ([], "split_plan_invalid", "splits", "splits must be a non-empty list"),
        (["ven_a"], "split_plan_invalid", "splits[0]", "splits[0] must be an object"),
        (
            [{"vendor": "ven_a", "amount": 10_000, "note": "x"}],
            "split_plan_invalid",
            "splits[0].note",
            "splits[0] has unknown field(s) note",
        ),
        (
            [{"vendor": "ven_a", "vendor_id": "ven_a", "amount": 10_000}],
            "split_plan_invalid",
            "splits[0]",
            "splits[0]: give 'vendor' or 'vendor_id', not both",
        ),
        (
            [{"amount": 10_000}],
            "split_vendor_missing",
            "splits[0].vendor",
            "splits[0].vendor must be a vendor id",
        ),
        (
            [{"vendor": 7, "amount": 10_000}],
            "split_vendor_missing",
            "splits[0].vendor",
            "splits[0].vendor must be a vendor id",
        ),
        (
            [{"vendor": "ven_a"}],
            "split_part_missing",
            "splits[0]",
            "splits[0] needs exactly one of 'amount' or 'share'",
        ),
        (
            [{"vendor": "ven_a", "amount": 10_000, "share": "1"}],
            "split_part_ambiguous",
            "splits[0]",
            "splits[0] needs exactly one of 'amount' or 'share'",
        ),
        (
            [{"vendor": "ven_a", "amount": 5000}, {"vendor": "ven_b", "share": "0.5"}],
            "split_plan_mixed",
            "splits[1].share",
            "splits[1] gives a share but splits[0] gives an amount: a plan uses amounts or shares, not both",
        ),
        (
            [{"vendor": "ven_a", "amount": "10000"}],
            "split_amount_invalid",
            "splits[0].amount",
            "splits[0].amount must be an integer number of minor units, got '10000'",
        ),
        (
            [{"vendor": "ven_a", "amount": 100.0}],
            "split_amount_invalid",
            "splits[0].amount",
            "splits[0].amount must be an integer number of minor units, got 100.0",
        ),
        (
            [{"vendor": "ven_a", "amount": True}],
            "split_amount_invalid",
            "splits[0].amount",
            "splits[0].amount must be an integer number of minor units, got True",
        ),
        (
            [{"vendor": "ven_a", "amount": 10_000}, {"vendor": "ven_b", "amount": 0}],
            "split_amount_invalid",
            "splits[1].amount",
            "splits[1].amount must be positive, got 0",
        ),
        (
            [{"vendor": "ven_a", "amount": 10_500}, {"vendor": "ven_b", "amount": -500}],
            "split_amount_invalid",
            "splits[1].amount",
            "splits[1].amount must be positive, got -500",
        ),
        (
            [{"vendor": "ven_a", "amount": 6000}, {"vendor": "ven_b", "amount": 3000}],
            "split_total_mismatch",
            "splits",
            "the split amounts add up to 90.00 USD but the payment is 100.00 USD",
        ),
        (
            [{"vendor": "ven_a", "share": "0.5"}, {"vendor": "ven_b", "share": "1/3"}],
            "split_total_mismatch",
            "splits",
            "the split shares add up to 5/6 (about 83.3333%), not 1",
        ),
        (
            [{"vendor": "ven_a", "share": "0.7"}, {"vendor": "ven_b", "share": "0.4"}],
            "split_total_mismatch",
            "splits",
            "the split shares add up to 11/10 (110%), not 1",
        ),
        (
            [{"vendor": "ven_zz", "amount": 10_000}],
            "vendor_unknown",
            "splits[0].vendor",
            "no vendor ven_zz in this marketplace",
        ),
        (
            [{"vendor": "ven_a", "amount": 5000}, {"vendor": "ven_off", "amount": 5000}],
            "vendor_disabled",
            "splits[1].vendor",
            "vendor ven_off is disabled and cannot be paid",
        ),
        (
            [{"vendor": "ven_a", "amount": 5000}, {"vendor": "ven_a", "amount": 5000}],
            "split_vendor_duplicate",
            "splits[1].vendor",
            "vendor ven_a appears twice (splits[0] and splits[1]): give each vendor one line",
        ),
        (
            [{"vendor": "ven_a", "amount": 10_000, "currency": "eur"}],
            "split_currency_mismatch",
            "splits[0].currency",
            "splits[0] is in eur but the payment is in usd: every split must be in the payment's currency",
        ),
        (
            [{"vendor": "ven_eur", "amount": 10_000}],
            "split_currency_mismatch",
            "splits[0].vendor",
            "vendor ven_eur is paid in eur but the payment is in usd: FX is never implicit",
        ),
        (
            [{"vendor": "ven_a", "amount": 10_000, "currency": "xyz"}],
            "split_currency_invalid",
            "splits[0].currency",
            "unknown currency 'xyz'",
        ),
    ],
)
def test_plan_errors_name_the_problem(raw, code, param, message):
    with pytest.raises(SplitError) as exc:
        validate(raw)
    assert (exc.value.code, exc.value.param, exc.value.message) == (code, param, message)


@pytest.mark.parametrize(
    ("share", "message"),
    [
        (
            0.5,
            'a share must be a decimal string such as "0.25" or a fraction such as "1/3" (floats are not exact), got 0.5',
        ),
        ("half", 'a share must be a decimal string such as "0.25" or a fraction such as "1/3", got \'half\''),
        ("NaN", 'a share must be a decimal string such as "0.25" or a fraction such as "1/3", got \'NaN\''),
        (
            "1" * 41,
            'a share must be a decimal string such as "0.25" or a fraction such as "1/3", got '
            + repr("1" * 41),
        ),
        ("1/0", "share '1/0' divides by zero"),
        ("0", "a share must be more than 0 and at most 1, got '0'"),
        ("-0.5", "a share must be more than 0 and at most 1, got '-0.5'"),
        ("3/2", "a share must be more than 0 and at most 1, got '3/2'"),
        ("1e-999999999", "a share must be more than 0 and at most 1, got '1e-999999999'"),
        ("1e999999999", "a share must be more than 0 and at most 1, got '1e999999999'"),
        (
            Decimal("Infinity"),
            'a share must be a decimal string such as "0.25" or a fraction such as "1/3", got Decimal(\'Infinity\')',
        ),
        (None, 'a share must be a decimal string such as "0.25" or a fraction such as "1/3", got None'),
    ],
)
def test_bad_shares(share, message):
    with pytest.raises(SplitError) as exc:
        validate([{"vendor": "ven_a", "share": share}])
    assert (exc.value.code, exc.value.param, exc.value.message) == (
        "split_share_invalid",
        "splits[0].share",
        message,
    )


def test_a_share_that_rounds_to_nothing():
    with pytest.raises(SplitError) as exc:
        validate(
            [{"vendor": "ven_a", "share": "0.999"}, {"vendor": "ven_b", "share": "0.001"}],
            amount=100,
            policy=CommissionTerms(percent_bps=0),
        )
    assert (exc.value.code, exc.value.param) == ("split_part_zero", "splits[1].share")
    assert exc.value.message == "splits[1].share: a share of 1/1000 of 1.00 USD rounds to nothing"


def test_commission_larger_than_the_part_is_refused_up_front():
    policy = CommissionTerms(percent_bps=1000, fixed={"usd": 30})
    with pytest.raises(SplitError) as exc:
        validate([{"vendor": "ven_a", "amount": 9980}, {"vendor": "ven_b", "amount": 20}], policy=policy)
    assert (exc.value.code, exc.value.param) == ("commission_exceeds_part", "splits[1].amount")
    assert exc.value.message == (
        "splits[1].amount: the commission on vendor ven_b's part (10% + 0.30 USD = 0.32 USD) is more "
        "than the part itself (0.20 USD)"
    )


@pytest.mark.parametrize(
    ("kwargs", "code", "param"),
    [
        ({"amount": 0}, "split_amount_invalid", "amount"),
        ({"amount": 10.0}, "split_amount_invalid", "amount"),
        ({"currency": "dollars"}, "split_currency_invalid", "currency"),
    ],
)
def test_bad_payment_input(kwargs, code, param):
    args: dict[str, Any] = {"amount": 10_000, "currency": "usd", **kwargs}
    with pytest.raises(SplitError) as exc:
        split_plan_validate([{"vendor": "ven_a", "amount": 10_000}], vendors=VENDORS, policy=DEFAULT, **args)
    assert (exc.value.code, exc.value.param) == (code, param)


@pytest.mark.parametrize(
    ("terms", "param", "message"),
    [
        (
            {"percent_bps": 10_001},
            "percent_bps",
            "commission percent must be 0-10000 basis points, got 10001",
        ),
        ({"percent_bps": -1}, "percent_bps", "commission percent must be 0-10000 basis points, got -1"),
        ({"percent_bps": "10"}, "percent_bps", "commission percent must be 0-10000 basis points, got '10'"),
        (
            {"percent_bps": 10, "fixed": {"usd": -1}},
            "fixed.usd",
            "fixed fee for usd must be a non-negative integer of minor units, got -1",
        ),
        (
            {"percent_bps": 10, "fixed": {"doubloon": 1}},
            "fixed.doubloon",
            "fixed fees: unknown currency 'doubloon'",
        ),
        ({"percent_bps": 10, "fixed": [30]}, "fixed", "fixed fees must be an object of currency -> amount"),
        (
            {"percent_bps": 10, "fee_policy": "customer"},
            "fee_policy",
            "fee policy must be one of platform, vendor, pro_rata, got 'customer'",
        ),
    ],
)
def test_bad_commission_terms(terms, param, message):
    with pytest.raises(SplitError) as exc:
        CommissionTerms(**terms)
    assert (exc.value.code, exc.value.param, exc.value.message) == ("commission_invalid", param, message)


def test_allocation_errors():
    plan = validate([{"vendor": "ven_a", "amount": 10_000}])
    cases = [
        (
            {"captured": 10_001},
            "split_total_mismatch",
            "captured 100.01 USD is more than the split plan's 100.00 USD",
        ),
        ({"captured": 0}, "split_amount_invalid", "the captured amount must be a positive integer, got 0"),
        (
            {"captured": 100, "processor_fee": -1},
            "split_fee_invalid",
            "the processor fee must be a non-negative integer, got -1",
        ),
    ]
    for kwargs, code, message in cases:
        with pytest.raises(SplitError) as exc:
            split_allocate(plan, **kwargs)
        assert (exc.value.code, exc.value.message) == (code, message)


def test_refund_errors():
    allocation = split_allocate(validate([{"vendor": "ven_a", "amount": 10_000}]), captured=10_000)
    with pytest.raises(SplitError) as exc:
        split_refund_unwind(allocation, amount=0)
    assert exc.value.code == "refund_amount_invalid"
    first = split_refund_unwind(allocation, amount=6000)
    with pytest.raises(SplitError) as exc:
        split_refund_unwind(allocation, amount=4001, previous=[first])
    assert (exc.value.code, exc.value.message) == (
        "refund_exceeds_remaining",
        "refund of 40.01 USD is more than the 40.00 USD left to refund",
    )
    other = split_allocate(validate([{"vendor": "ven_b", "amount": 10_000}]), captured=10_000)
    foreign = split_refund_unwind(other, amount=100)
    with pytest.raises(SplitError) as exc:
        split_refund_unwind(allocation, amount=100, previous=[foreign])
    assert exc.value.code == "refund_history_invalid"
