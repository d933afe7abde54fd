"""Posting through the services: exact entries and balances, idempotency, optimistic concurrency,
protected accounts, reversals, FX, and bad input that must write nothing.

Tests that need real commits (times, the first posting of a fresh marketplace) get their own
marketplace; the rest run in tenant A inside the test transaction, whose teardown still fires the
deferred double-entry check (``SET CONSTRAINTS ALL IMMEDIATE``) before rolling back."""

from __future__ import annotations

from datetime import UTC

import pytest

from apps.ledger import selectors, services
from apps.ledger.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidPosting,
    UnknownAccount,
    UnknownEventType,
)
from apps.ledger.rules import RuleSet, rules_register
from tests.ledger.observe import entries_of, row_counts


def transfer(debit: str, credit: str, amount: int, currency: str = "USD") -> dict:
    return {"debit": debit, "credit": credit, "amount": amount, "currency": currency}


def fund_vendor(amount: int, key: str = "fund-v1", currency: str = "USD") -> services.Recorded:
    """What a captured charge does for the vendor: Dr clearing / Cr vendor_payable."""
    return services.ledger_record(
        event_type="Transfer",
        stream=f"fund_{key}",
        payload=transfer("processor_clearing:sim", "vendor_payable:v1", amount, currency),
        idempotency_key=key,
    )


def pay_out(amount: int, key: str, currency: str = "USD") -> services.Recorded:
    return services.ledger_record(
        event_type="Transfer",
        stream=f"payout_{key}",
        payload=transfer("vendor_payable:v1", "processor_clearing:sim", amount, currency),
        idempotency_key=key,
    )


# --------------------------------------------------------------------------- entries and balances


def test_manual_adjustment_posts_one_debit_and_one_credit_and_moves_both_balances(ledger_tenant):
    # given a fresh marketplace: its fixed accounts exist in USD with zero balances

    # when
    recorded = services.ledger_post_manual(
        debit="suspense",
        credit="platform_revenue",
        amount=1234,
        currency="usd",
        reason=" unexplained deposit ",
        actor="ops@test",
        idempotency_key="adj-1",
    )

    # then
    event = recorded.event
    assert recorded.created is True
    assert (event.type, event.stream, event.version, event.idempotency_key) == (
        "ManualAdjustment",
        "adj_adj-1",
        1,
        "adj-1",
    )
    assert event.payload == {
        "debit": "suspense",
        "credit": "platform_revenue",
        "amount": 1234,
        "currency": "USD",
        "reason": "unexplained deposit",
        "actor": "ops@test",
    }
    assert event.public_id.startswith("evt_") and len(event.public_id) == 28
    assert entries_of(event.pk) == [("suspense", "USD", "D", 1234), ("platform_revenue", "USD", "C", 1234)]
    assert row_counts() == {
        "ledger_event": 1,
        "ledger_transaction": 1,
        "ledger_entry": 2,
        "ledger_chain_link": 0,
        "ledger_seal": 0,
        "ledger_account": 7,
    }
    zero = {"balance": 0, "debits": 0, "credits": 0}
    assert selectors.balances_list() == [
        {"account": "connected_balances", "currency": "USD", **zero},
        {"account": "disputes", "currency": "USD", **zero},
        {"account": "fx", "currency": "USD", **zero},
        {"account": "platform_revenue", "currency": "USD", "balance": 1234, "debits": 0, "credits": 1234},
        {"account": "processor_fees", "currency": "USD", **zero},
        {"account": "refunds", "currency": "USD", **zero},
        {"account": "suspense", "currency": "USD", "balance": 1234, "debits": 1234, "credits": 0},
    ]
    assert selectors.balance_get(code="suspense", currency="USD") == 1234
    assert selectors.balance_get(code="platform_revenue", currency="usd") == 1234
    assert selectors.balance_get(code="suspense", currency="EUR") == 0


def test_balances_are_seen_from_each_accounts_normal_side(in_empty_ledger):
    # given
    fund_vendor(9000)  # Dr clearing (asset) / Cr vendor_payable (liability)
    services.ledger_post_manual(
        debit="vendor_payable:v1", credit="platform_revenue", amount=1000, currency="USD", reason="commission"
    )

    # when
    rows = selectors.balances_list(include_zero=False)
    eur_rows = selectors.balances_list(currency="eur")

    # then
    assert rows == [
        {"account": "platform_revenue", "currency": "USD", "balance": 1000, "debits": 0, "credits": 1000},
        {
            "account": "processor_clearing:sim",
            "currency": "USD",
            "balance": 9000,
            "debits": 9000,
            "credits": 0,
        },
        {"account": "vendor_payable:v1", "currency": "USD", "balance": 8000, "debits": 1000, "credits": 9000},
    ]
    assert eur_rows == []


def test_balance_as_of_an_event_or_a_time_and_the_closing_balance_per_day(ledger_tenant):
    # given three events, each in its own committed transaction
    first = services.ledger_post_manual(
        debit="suspense", credit="platform_revenue", amount=100, currency="USD", reason="one"
    )
    second = services.ledger_post_manual(
        debit="suspense", credit="platform_revenue", amount=250, currency="USD", reason="two"
    )
    third = services.ledger_record(
        event_type="Transfer",
        stream="move-1",
        payload=transfer("processor_clearing:sim", "suspense", 30),
        idempotency_key="move-1",
    )

    # when / then: by event position (inclusive)
    assert selectors.balance_as_of(code="suspense", currency="USD", event_id=first.event.pk) == 100
    assert selectors.balance_as_of(code="suspense", currency="USD", event_id=second.event.pk) == 350
    assert selectors.balance_as_of(code="suspense", currency="USD", event_id=third.event.pk) == 320
    assert selectors.balance_as_of(code="suspense", currency="USD", event_id=first.event.pk - 1) == 0
    assert selectors.balance_as_of(code="suspense", currency="USD") == 320
    # by time: an event's recorded_at is its transaction's start
    assert selectors.balance_as_of(code="suspense", currency="USD", at=first.event.recorded_at) == 100
    assert selectors.balance_as_of(code="suspense", currency="USD", at=second.event.recorded_at) == 350
    assert selectors.balance_as_of(code="platform_revenue", currency="USD", at=third.event.recorded_at) == 350
    assert selectors.balance_as_of(code="nobody", currency="USD", event_id=third.event.pk) == 0
    # history: closing balance per day bucket (all three fall on the same day unless run across midnight)
    days = sorted(
        {
            r.event.recorded_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            for r in (first, second, third)
        }
    )
    history = selectors.balance_history(code="suspense", currency="USD", bucket="day")
    assert [b for b, _ in history] == days
    assert history[-1][1] == 320
    assert selectors.balance_history(code="suspense", currency="JPY") == []
    with pytest.raises(ValueError, match="bucket must be hour, day, week or month"):
        selectors.balance_history(code="suspense", currency="USD", bucket="year")


# --------------------------------------------------------------------------- idempotency


def test_same_idempotency_key_returns_the_first_event_and_posts_nothing_new(in_empty_ledger):
    # given
    first = services.ledger_post_manual(
        debit="suspense",
        credit="platform_revenue",
        amount=500,
        currency="USD",
        reason="r",
        idempotency_key="k1",
    )
    before = row_counts()

    # when
    again = services.ledger_post_manual(
        debit="suspense",
        credit="platform_revenue",
        amount=500,
        currency="USD",
        reason="r",
        idempotency_key="k1",
    )

    # then
    assert again.created is False
    assert (again.event.pk, again.event.public_id) == (first.event.pk, first.event.public_id)
    assert again.transaction_id == first.transaction_id
    assert row_counts() == before
    assert selectors.balance_get(code="suspense", currency="USD") == 500


def test_same_idempotency_key_with_a_different_payload_is_a_conflict_and_writes_nothing(in_empty_ledger):
    # given
    first = services.ledger_post_manual(
        debit="suspense",
        credit="platform_revenue",
        amount=500,
        currency="USD",
        reason="r",
        idempotency_key="k1",
    )
    before = row_counts()

    # when / then
    with pytest.raises(IdempotencyConflict) as err:
        services.ledger_post_manual(
            debit="suspense",
            credit="platform_revenue",
            amount=501,
            currency="USD",
            reason="r",
            idempotency_key="k1",
        )
    assert str(err.value) == (
        f"idempotency key 'k1' was already used for event {first.event.public_id} with different content"
    )
    assert err.value.code == "idempotency_conflict"
    with pytest.raises(IdempotencyConflict):
        services.ledger_record(
            event_type="Transfer",
            stream=first.event.stream,
            payload=first.event.payload,
            idempotency_key="k1",
        )
    assert row_counts() == before
    assert selectors.balance_get(code="suspense", currency="USD") == 500


# --------------------------------------------------------------------------- optimistic concurrency


def test_expected_version_must_be_the_streams_current_version(in_empty_ledger):
    # given a stream at version 2
    for version, key in ((0, "p-1"), (1, "p-2")):
        services.ledger_record(
            event_type="Transfer",
            stream="pay_1",
            payload=transfer("processor_clearing:sim", "suspense", 10),
            idempotency_key=key,
            expected_version=version,
        )
    before = row_counts()

    # when / then: a stale version
    with pytest.raises(ConcurrencyError) as stale:
        services.ledger_record(
            event_type="Transfer",
            stream="pay_1",
            payload=transfer("processor_clearing:sim", "suspense", 10),
            idempotency_key="p-3",
            expected_version=1,
        )
    # a version the stream never reached
    with pytest.raises(ConcurrencyError) as ahead:
        services.ledger_record(
            event_type="Transfer",
            stream="pay_1",
            payload=transfer("processor_clearing:sim", "suspense", 10),
            idempotency_key="p-4",
            expected_version=5,
        )
    # the current one
    current = services.ledger_record(
        event_type="Transfer",
        stream="pay_1",
        payload=transfer("processor_clearing:sim", "suspense", 10),
        idempotency_key="p-5",
        expected_version=2,
    )

    # then
    assert str(stale.value) == "stream 'pay_1' is past version 1; reload and retry"
    assert str(ahead.value) == "stream 'pay_1' is at version 2, not 5; reload and retry"
    assert stale.value.code == ahead.value.code == "version_conflict"
    assert current.event.version == 3
    assert row_counts()["ledger_event"] == before["ledger_event"] + 1
    assert selectors.balance_get(code="suspense", currency="USD") == -30  # asset side: credited 3 x 10


# --------------------------------------------------------------------------- protected accounts


def test_a_protected_vendor_payable_cannot_be_overdrawn_and_nothing_is_written(in_empty_ledger):
    # given
    fund_vendor(500)
    before = row_counts()

    # when / then
    with pytest.raises(InsufficientFunds) as err:
        pay_out(600, "po-1")
    assert str(err.value) == "insufficient funds in vendor_payable:v1 (USD): balance would be -100"
    assert err.value.code == "insufficient_funds"
    assert row_counts() == before
    assert selectors.balance_get(code="vendor_payable:v1", currency="USD") == 500
    assert selectors.balance_get(code="processor_clearing:sim", currency="USD") == 500

    # and an account that never held money is not even created by a refused debit
    with pytest.raises(InsufficientFunds, match=r"vendor_payable:v2 \(USD\): balance would be -1$"):
        services.ledger_post_manual(
            debit="vendor_payable:v2", credit="suspense", amount=1, currency="USD", reason="x"
        )
    assert row_counts() == before

    # and paying out exactly the balance is fine
    paid = pay_out(500, "po-2")
    assert paid.created is True
    assert selectors.balance_get(code="vendor_payable:v1", currency="USD") == 0


def test_a_reversal_mirrors_the_entries_and_may_overdraw_a_protected_account(in_empty_ledger):
    # given a vendor credited 500 who was then paid 400
    funded = fund_vendor(500)
    pay_out(400, "po-1")

    # when the original credit is reversed (e.g. the charge was refunded after the payout)
    reversal = services.ledger_reverse(event=funded.event, reason="charge refunded")
    again = services.ledger_reverse(event=funded.event, reason="charge refunded")

    # then
    assert reversal.created is True and again.created is False
    assert again.event.public_id == reversal.event.public_id
    assert (reversal.event.type, reversal.event.stream, reversal.event.idempotency_key) == (
        "Reversal",
        "fund_fund-v1",
        f"reverse:{funded.event.public_id}",
    )
    assert reversal.event.payload == {
        "reverses": funded.event.public_id,
        "reason": "charge refunded",
        "lines": [
            {"account": "processor_clearing:sim", "currency": "USD", "side": "C", "amount": 500},
            {"account": "vendor_payable:v1", "currency": "USD", "side": "D", "amount": 500},
        ],
    }
    assert entries_of(reversal.event.pk) == [
        ("processor_clearing:sim", "USD", "C", 500),
        ("vendor_payable:v1", "USD", "D", 500),
    ]
    assert selectors.balance_get(code="vendor_payable:v1", currency="USD") == -400
    assert selectors.balance_get(code="processor_clearing:sim", currency="USD") == -400

    # and while it is negative, ordinary debits are refused but credits are not
    with pytest.raises(InsufficientFunds, match="balance would be -401"):
        pay_out(1, "po-2")
    fund_vendor(150, key="fund-v1-2")
    assert selectors.balance_get(code="vendor_payable:v1", currency="USD") == -250


def test_an_event_that_posted_nothing_cannot_be_reversed(in_empty_ledger):
    # given an event type that moves no money
    notes = RuleSet()
    notes.no_posting("LedgerTestNote")
    rules_register(notes)
    note = services.ledger_record(
        event_type="LedgerTestNote", stream="note-1", payload={"text": "hello"}, idempotency_key="note-1"
    )
    before = row_counts()

    # when / then
    assert note.transaction_id is None and note.lines == []
    with pytest.raises(InvalidPosting) as err:
        services.ledger_reverse(event=note.event, reason="x")
    assert str(err.value) == f"event {note.event.public_id} posted nothing; there is nothing to reverse"
    assert row_counts() == before
    assert (before["ledger_event"], before["ledger_transaction"], before["ledger_entry"]) == (1, 0, 0)


# --------------------------------------------------------------------------- FX


def test_fx_conversion_posts_four_lines_through_the_fx_account_with_the_rate_on_the_event(in_empty_ledger):
    # when
    recorded = services.ledger_fx_convert(
        from_account="suspense",
        from_currency="USD",
        from_amount=10000,
        to_account="processor_clearing:sim",
        to_currency="eur",
        rate="0.9215",
        idempotency_key="fx-1",
    )

    # then
    assert recorded.event.type == "FxConversion"
    assert recorded.event.payload == {
        "from_account": "suspense",
        "from_currency": "USD",
        "from_amount": 10000,
        "to_account": "processor_clearing:sim",
        "to_currency": "EUR",
        "to_amount": 9215,
        "rate": "0.9215",
    }
    assert entries_of(recorded.event.pk) == [
        ("suspense", "USD", "C", 10000),
        ("fx", "USD", "D", 10000),
        ("fx", "EUR", "C", 9215),
        ("processor_clearing:sim", "EUR", "D", 9215),
    ]
    assert selectors.balances_list(include_zero=False) == [
        {"account": "fx", "currency": "EUR", "balance": 9215, "debits": 0, "credits": 9215},
        {"account": "fx", "currency": "USD", "balance": -10000, "debits": 10000, "credits": 0},
        {
            "account": "processor_clearing:sim",
            "currency": "EUR",
            "balance": 9215,
            "debits": 9215,
            "credits": 0,
        },
        {"account": "suspense", "currency": "USD", "balance": -10000, "debits": 0, "credits": 10000},
    ]


def test_fx_rounds_half_even_to_the_target_minor_unit(in_empty_ledger):
    # when: 1.50 USD and 2.50 USD into JPY at 1 (JPY has no minor unit)
    up = services.ledger_fx_convert(
        from_account="suspense",
        from_currency="USD",
        from_amount=150,
        to_account="suspense",
        to_currency="JPY",
        rate="1",
        idempotency_key="fx-up",
    )
    down = services.ledger_fx_convert(
        from_account="suspense",
        from_currency="USD",
        from_amount=250,
        to_account="suspense",
        to_currency="JPY",
        rate="1",
        idempotency_key="fx-down",
    )

    # then
    assert up.event.payload["to_amount"] == 2
    assert down.event.payload["to_amount"] == 2
    assert selectors.balance_get(code="fx", currency="JPY") == 4


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"to_amount": 9216}, "to_amount 9216 does not match 10000 USD at 0.9215 (= 9215 EUR)"),
        ({"to_currency": "USD", "to_amount": 10000}, "an FX conversion needs two different currencies"),
        ({"rate": "0"}, "rate must be positive"),
        ({"rate": "NaN"}, "rate must be positive"),
        ({"rate": "fast"}, "rate must be a decimal number"),
        ({"rate": "1e40"}, "rate 1E+40 is out of range"),
        ({"to_amount": 0, "rate": "0.00001"}, "amount must be positive, got 0"),
    ],
)
def test_an_fx_event_that_does_not_add_up_is_rejected(in_tenant_a, change, error):
    # given
    payload = {
        "from_account": "suspense",
        "from_currency": "USD",
        "from_amount": 10000,
        "to_account": "processor_clearing:sim",
        "to_currency": "EUR",
        "to_amount": 9215,
        "rate": "0.9215",
        **change,
    }
    before = row_counts()

    # when / then
    with pytest.raises(InvalidPosting) as err:
        services.ledger_record(
            event_type="FxConversion", stream="fx-bad", payload=payload, idempotency_key="fx-bad"
        )
    assert str(err.value) == error
    assert row_counts() == before


@pytest.mark.parametrize(
    ("rate", "error"),
    [
        ("fast", "rate must be a positive decimal number, got 'fast'"),
        ("NaN", "rate must be a positive decimal number, got 'NaN'"),
        ("Infinity", "rate must be a positive decimal number, got 'Infinity'"),
        ("1e40", "rate must be a positive decimal number, got '1e40'"),
        ("-1", "rate must be positive, got -1"),
    ],
)
def test_fx_convert_rejects_a_rate_that_is_not_a_positive_number(in_tenant_a, rate, error):
    # given
    before = row_counts()

    # when / then
    with pytest.raises(InvalidPosting) as err:
        services.ledger_fx_convert(
            from_account="suspense",
            from_currency="USD",
            from_amount=100,
            to_account="suspense",
            to_currency="EUR",
            rate=rate,
            idempotency_key="fx-rate",
        )
    assert str(err.value) == error
    assert row_counts() == before


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"debit": "petty_cash"},
            UnknownAccount,
            "unknown account 'petty_cash': not in the chart of accounts",
        ),
        (
            {"credit": "vendor_payable"},
            UnknownAccount,
            "account 'vendor_payable' needs a suffix, e.g. vendor_payable:<id>",
        ),
        ({"debit": "suspense:x"}, UnknownAccount, "account 'suspense' takes no suffix (got 'suspense:x')"),
        ({"credit": "suspense"}, InvalidPosting, "debit and credit must be different accounts"),
        ({"amount": 0}, InvalidPosting, "amount must be positive, got 0"),
        ({"amount": -5}, InvalidPosting, "amount must be positive, got -5"),
        ({"amount": 1.5}, InvalidPosting, "amount must be an integer number of minor units, got 1.5"),
        ({"amount": "10"}, InvalidPosting, "amount must be an integer number of minor units, got '10'"),
        ({"amount": True}, InvalidPosting, "amount must be an integer number of minor units, got True"),
        (
            {"amount": 2**63},
            InvalidPosting,
            f"amount {2**63} is larger than the ledger's limit of {2**63 - 1}",
        ),
        ({"currency": "XYZ"}, InvalidPosting, "unknown currency 'XYZ'"),
        ({"reason": "  "}, InvalidPosting, "a manual adjustment needs a reason"),
    ],
)
def test_a_bad_manual_adjustment_raises_a_ledger_error_and_writes_nothing(
    in_tenant_a, change, error, message
):
    # given
    args = {
        "debit": "suspense",
        "credit": "platform_revenue",
        "amount": 100,
        "currency": "USD",
        "reason": "r",
    }
    before = row_counts()

    # when / then
    with pytest.raises(error) as err:
        services.ledger_post_manual(**{**args, **change})
    assert str(err.value) == message
    assert row_counts() == before


def test_an_unknown_event_type_is_refused(in_tenant_a):
    # given
    before = row_counts()

    # when / then
    with pytest.raises(UnknownEventType) as err:
        services.ledger_record(
            event_type="ChargeSucceded",
            stream="s",
            payload=transfer("suspense", "fx", 1),
            idempotency_key="k",
        )
    assert str(err.value) == "unknown event type 'ChargeSucceded'"
    assert err.value.code == "unknown_event_type"
    assert row_counts() == before


def test_debits_and_credits_in_different_currencies_are_a_currency_mismatch(in_tenant_a):
    # given
    payload = {
        "reverses": "evt_x",
        "lines": [
            {"account": "suspense", "currency": "USD", "side": "D", "amount": 100},
            {"account": "platform_revenue", "currency": "EUR", "side": "C", "amount": 100},
        ],
    }
    before = row_counts()

    # when / then
    with pytest.raises(InvalidPosting) as err:
        services.ledger_record(event_type="Reversal", stream="s", payload=payload, idempotency_key="k")
    assert str(err.value) == (
        "currency mismatch: debits in USD, credits in EUR; convert through the fx account"
    )
    assert row_counts() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": ""}, "stream must be a non-empty string of at most 200 characters"),
        ({"stream": "s" * 201}, "stream must be a non-empty string of at most 200 characters"),
        ({"idempotency_key": ""}, "idempotency_key must be 1-255 characters"),
        ({"expected_version": -1}, "expected_version must be a non-negative integer"),
        ({"payload": ["not", "an", "object"]}, "payload must be a JSON object"),
        ({"payload": {**transfer("suspense", "fx", 1), "at": object()}}, "payload must be plain JSON"),
        ({"payload": {"debit": "suspense", "amount": 1, "currency": "USD"}}, "payload is missing 'credit'"),
    ],
)
def test_a_malformed_record_call_is_refused(in_tenant_a, kwargs, message):
    # given
    args = {
        "event_type": "Transfer",
        "stream": "s",
        "payload": transfer("suspense", "fx", 1),
        "idempotency_key": "k",
        **kwargs,
    }
    before = row_counts()

    # when / then
    with pytest.raises(InvalidPosting) as err:
        services.ledger_record(**args)
    assert str(err.value).startswith(message)
    assert row_counts() == before
