"""The ledger as a state machine: random postings, reversals, FX conversions, repeated
and conflicting idempotency keys and seals against one committed marketplace, with a model of
the expected balances in Python. After every step the stored ledger must equal the model and its
own replay, every journal transaction must balance, every currency must net to zero, and the
protected vendor account must never be overdrawn by anything but a reversal."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.core.money import convert
from apps.ledger import integrity, services
from apps.ledger.errors import IdempotencyConflict, InsufficientFunds, InvalidPosting, LedgerError
from apps.ledger.models import LedgerEvent
from tests.ledger.observe import (
    entries_of,
    net_per_currency,
    nets_from_replay,
    nonzero_balances,
    unbalanced_transactions,
)

PROTECTED = "vendor_payable:v1"
ACCOUNTS = ["suspense", "platform_revenue", "processor_clearing:sim", PROTECTED, "refunds"]
CURRENCIES = ["USD", "EUR", "JPY"]
RATES = ["0.5", "1", "0.9215", "151.37", "0.0066"]

accounts = st.sampled_from(ACCOUNTS)
currencies = st.sampled_from(CURRENCIES)
amounts = st.integers(min_value=1, max_value=50_000)


@dataclass
class Posted:
    """One event this machine created: how to make the same call again, and what it moved."""

    call: str  # "manual", "record", "fx" or "reverse"
    kwargs: dict
    public_id: str
    event: LedgerEvent | None
    deltas: dict[tuple[str, str], int] = field(default_factory=dict)  # (code, currency) -> net


def two_leg_deltas(debit: str, credit: str, amount: int, currency: str) -> dict[tuple[str, str], int]:
    return {(debit, currency): amount, (credit, currency): -amount}


class LedgerMachine(RuleBasedStateMachine):
    posted = Bundle("posted")

    def __init__(self) -> None:
        super().__init__()
        # The marketplace outlives one example. Outcomes must depend only on this example's steps
        # (Hypothesis replays them), so settle the protected account to zero first, then model
        # from whatever else earlier examples left.
        for cur in CURRENCIES:
            owed = -nonzero_balances().get((PROTECTED, cur), 0)
            if owed:
                payload = {
                    "debit": PROTECTED if owed > 0 else "processor_clearing:sim",
                    "credit": "processor_clearing:sim" if owed > 0 else PROTECTED,
                    "amount": abs(owed),
                    "currency": cur,
                }
                key = "sm-settle-" + uuid.uuid4().hex
                services.ledger_record(
                    event_type="Transfer", stream=key, payload=payload, idempotency_key=key
                )
        self.model: dict[tuple[str, str], int] = defaultdict(int, nonzero_balances())
        self.reversed: dict[str, str] = {}  # reversed public_id -> reversal public_id
        assert [self.vendor_balance(cur) for cur in CURRENCIES] == [0, 0, 0]
        self.overdrawn_by_reversal = dict.fromkeys(CURRENCIES, False)
        self.since_seal = 0  # events recorded since the last seal

    # ----------------------------------------------------------------------- the model

    def vendor_balance(self, currency: str) -> int:
        return -self.model.get((PROTECTED, currency), 0)  # a liability: credit-normal

    def would_overdraw(self, deltas: dict[tuple[str, str], int]) -> bool:
        return any(
            code == PROTECTED and delta > 0 and self.vendor_balance(cur) - delta < 0
            for (code, cur), delta in deltas.items()
        )

    def apply(self, deltas: dict[tuple[str, str], int], *, by_reversal: bool = False) -> None:
        for key, delta in deltas.items():
            self.model[key] += delta
        self.since_seal += 1
        for cur in CURRENCIES:
            if self.vendor_balance(cur) >= 0:
                self.overdrawn_by_reversal[cur] = False
            elif by_reversal and (PROTECTED, cur) in deltas:
                self.overdrawn_by_reversal[cur] = True

    def call(self, posted: Posted, **changes) -> services.Recorded:
        kwargs = {**posted.kwargs, **changes}
        if posted.call == "manual":
            return services.ledger_post_manual(**kwargs)
        if posted.call == "record":
            return services.ledger_record(**kwargs)
        if posted.call == "fx":
            return services.ledger_fx_convert(**kwargs)
        return services.ledger_reverse(**kwargs)

    def expect(self, posted: Posted, error: type[LedgerError] | None):
        """Make the call; it must raise exactly ``error`` (or succeed if None)."""
        try:
            recorded = self.call(posted)
        except LedgerError as exc:
            assert type(exc) is error, f"{posted.call} raised {exc!r}, expected {error}"
            return multiple()
        assert error is None, f"{posted.call} {posted.kwargs} succeeded, expected {error}"
        assert recorded.created is True
        self.apply(posted.deltas)
        posted.public_id, posted.event = recorded.event.public_id, recorded.event
        return posted

    # ----------------------------------------------------------------------- rules

    @rule(
        target=posted,
        debit=accounts,
        credit=accounts,
        amount=amounts,
        currency=currencies,
        manual=st.booleans(),
    )
    def post(self, debit, credit, amount, currency, manual):
        key = "sm-" + uuid.uuid4().hex
        deltas = two_leg_deltas(debit, credit, amount, currency)
        if manual:
            kwargs = {"debit": debit, "credit": credit, "amount": amount, "currency": currency}
            posted = Posted("manual", {**kwargs, "reason": "sm", "idempotency_key": key}, "", None, deltas)
        else:
            payload = {"debit": debit, "credit": credit, "amount": amount, "currency": currency}
            kwargs = {"event_type": "Transfer", "stream": key, "payload": payload, "idempotency_key": key}
            posted = Posted("record", kwargs, "", None, deltas)
        if debit == credit:
            return self.expect(posted, InvalidPosting)
        return self.expect(posted, InsufficientFunds if self.would_overdraw(deltas) else None)

    @rule(target=posted, currency=currencies, extra=st.integers(min_value=-2, max_value=2))
    def pay_out_the_balance(self, currency, extra):
        """A payout of the vendor's whole balance, give or take a little: the edge of the rule."""
        amount = self.vendor_balance(currency) + extra
        key = "sm-po-" + uuid.uuid4().hex
        payload = {
            "debit": PROTECTED,
            "credit": "processor_clearing:sim",
            "amount": amount,
            "currency": currency,
        }
        kwargs = {"event_type": "Transfer", "stream": key, "payload": payload, "idempotency_key": key}
        posted = Posted(
            "record", kwargs, "", None, two_leg_deltas(PROTECTED, "processor_clearing:sim", amount, currency)
        )
        if amount <= 0:
            return self.expect(posted, InvalidPosting)
        return self.expect(posted, InsufficientFunds if extra > 0 else None)

    @rule(
        target=posted,
        source=accounts,
        target_account=accounts,
        amount=amounts,
        pair=st.tuples(currencies, currencies),
        rate=st.sampled_from(RATES),
    )
    def fx(self, source, target_account, amount, pair, rate):
        from_cur, to_cur = pair
        to_amount = convert(amount, from_currency=from_cur, to_currency=to_cur, rate=rate)
        deltas = {(source, from_cur): -amount, ("fx", from_cur): amount}
        deltas[("fx", to_cur)] = deltas.get(("fx", to_cur), 0) - to_amount
        deltas[(target_account, to_cur)] = deltas.get((target_account, to_cur), 0) + to_amount
        kwargs = {
            "from_account": source,
            "from_currency": from_cur,
            "from_amount": amount,
            "to_account": target_account,
            "to_currency": to_cur,
            "rate": rate,
            "idempotency_key": "sm-fx-" + uuid.uuid4().hex,
        }
        posted = Posted("fx", kwargs, "", None, deltas)
        if from_cur == to_cur or to_amount == 0:
            return self.expect(posted, InvalidPosting)
        return self.expect(posted, InsufficientFunds if self.would_overdraw(deltas) else None)

    @rule(target=posted, original=posted)
    def reverse(self, original):
        assert original.event is not None
        assert sorted(entries_of(original.event.pk)) == sorted(
            (code, cur, "D" if delta > 0 else "C", abs(delta))
            for (code, cur), delta in original.deltas.items()
        )
        posted = Posted(
            "reverse",
            {"event": original.event, "reason": "sm"},
            "",
            None,
            {key: -delta for key, delta in original.deltas.items()},
        )
        recorded = self.call(posted)
        if original.public_id in self.reversed:
            assert recorded.created is False
            assert recorded.event.public_id == self.reversed[original.public_id]
            return multiple()
        assert recorded.created is True
        self.apply(posted.deltas, by_reversal=True)
        self.reversed[original.public_id] = recorded.event.public_id
        posted.public_id, posted.event = recorded.event.public_id, recorded.event
        return posted

    @rule(original=posted)
    def repeat(self, original):
        """The same call with the same key: the first event comes back and nothing moves."""
        recorded = self.call(original)
        assert recorded.created is False
        if original.call == "reverse":
            assert recorded.event.public_id == self.reversed[original.kwargs["event"].public_id]
        else:
            assert recorded.event.public_id == original.public_id

    @rule(original=posted)
    def conflict(self, original):
        """The same key for different content is refused."""
        if original.call == "reverse":
            changes: dict = {"reason": "something else"}
        elif original.call == "record":
            changes = {
                "payload": {**original.kwargs["payload"], "amount": original.kwargs["payload"]["amount"] + 1}
            }
        elif original.call == "fx":
            changes = {"from_amount": original.kwargs["from_amount"] * 2}
        else:
            changes = {"amount": original.kwargs["amount"] + 1}
        try:
            self.call(original, **changes)
        except IdempotencyConflict:
            return
        raise AssertionError(f"{original.call} with a used key and new content was accepted")

    @precondition(lambda self: self.since_seal >= 4)
    @rule()
    def seal(self):
        """Seal and verify now and then (it reads the whole ledger)."""
        self.since_seal = 0
        integrity.ledger_seal()  # takes what has finished; no waiting for the rest of the server
        report = integrity.ledger_verify()
        assert report.problems == []

    # ----------------------------------------------------------------------- invariants

    @invariant()
    def every_journal_transaction_balances(self):
        assert unbalanced_transactions() == []

    @invariant()
    def every_currency_nets_to_zero(self):
        assert {cur: net for cur, net in net_per_currency().items() if net != 0} == {}

    @invariant()
    def balances_equal_the_model_and_the_replay(self):
        expected = {key: net for key, net in self.model.items() if net != 0}
        assert nonzero_balances() == expected
        assert nets_from_replay() == expected

    @invariant()
    def the_protected_account_is_overdrawn_only_by_reversals(self):
        for cur in CURRENCIES:
            assert self.vendor_balance(cur) == -nonzero_balances().get((PROTECTED, cur), 0)
            assert self.vendor_balance(cur) >= 0 or self.overdrawn_by_reversal[cur]

    def teardown(self):
        assert integrity.ledger_verify().problems == []


def test_the_ledger_keeps_its_invariants_under_random_operations(ledger_tenant):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
