"""The one state-machine style (apps/core/statemachine.py) and every app's machines on it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from apps.billing import states as billing_states
from apps.billing.errors import BillingError
from apps.billing.models import Invoice, Subscription
from apps.core.statemachine import IllegalTransition, StateMachine
from apps.payments import statemachine as payment_states
from apps.vendors import states as vendor_states
from apps.vendors.models import Transfer, Vendor

LIGHT = StateMachine(
    {"red": {"green"}, "green": {"amber"}, "amber": {"red"}}, states=["red", "green", "amber"]
)


def test_a_legal_move_changes_the_status_and_an_illegal_one_raises_and_changes_nothing():
    light = SimpleNamespace(pk=7, status="red")
    LIGHT.advance(light, "green")
    assert light.status == "green"
    with pytest.raises(IllegalTransition, match="cannot go from green to red") as refused:
        LIGHT.advance(light, "red")
    assert (refused.value.current, refused.value.target, refused.value.obj) == ("green", "red", light)
    assert light.status == "green"
    assert LIGHT.can("amber", "red") and not LIGHT.can("amber", "green") and not LIGHT.can("blue", "red")


def test_an_app_may_raise_its_own_error_and_move_another_field():
    machine = StateMachine(
        {"open": {"closed"}, "closed": set()},
        field="state",
        error=lambda obj, current, target: ValueError(f"{obj.name}: {current} -> {target}"),
    )
    door = SimpleNamespace(name="door", state="closed")
    assert machine.terminal("closed") and not machine.terminal("open")
    with pytest.raises(ValueError, match="door: closed -> open"):
        machine.advance(door, "open")


def test_a_table_must_cover_exactly_the_models_states():
    with pytest.raises(ValueError, match="undeclared"):
        StateMachine({"a": {"b"}})
    with pytest.raises(ValueError, match="the model has"):
        StateMachine({"a": set()}, states=["a", "b"])


@pytest.mark.parametrize(
    "machine",
    [
        payment_states.INTENT,
        payment_states.ATTEMPT,
        payment_states.REFUND,
        payment_states.LATE_CHARGE,
        payment_states.DISPUTE,
        billing_states.SUBSCRIPTION,
        billing_states.INVOICE,
        billing_states.INVOICE_ATTEMPT,
        vendor_states.VENDOR,
        vendor_states.TRANSFER,
        vendor_states.REVERSAL,
        vendor_states.PAYOUT,
    ],
)
def test_every_stateful_model_has_a_machine_in_the_one_style(machine):
    assert isinstance(machine, StateMachine) and machine.states


def test_billing_refuses_an_illegal_move_with_its_api_error():
    sub = Subscription(id="sub_1", status="canceled")
    with pytest.raises(
        BillingError, match="subscription sub_1 is canceled; it cannot become active"
    ) as refused:
        billing_states.subscription_to(sub, "active")
    assert refused.value.code == "subscription_unexpected_state"
    invoice = Invoice(id="in_1", status="void")
    billing_states.invoice_to(invoice, "paid")  # captured after the void: the money is recorded
    assert invoice.status == "paid"


def test_vendors_and_their_money_move_forward_only():
    transfer = Transfer(id="tr_1", status="pending")
    for step in ("held", "pending", "sending", "paid"):
        vendor_states.transfer_to(transfer, step)
    with pytest.raises(IllegalTransition):
        vendor_states.transfer_to(transfer, "canceled")
    vendor = Vendor(id="ven_1", status="disabled", payouts_enabled=True)
    assert vendor_states.vendor_reenabled_status(vendor) == "active"
    vendor_states.vendor_to(vendor, "active")
    assert vendor_states.can_receive(vendor)
    with pytest.raises(IllegalTransition):
        vendor_states.vendor_to(vendor, "invited")
