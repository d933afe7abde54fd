"""Saved cards and merchant-initiated charges: a payment with ``setup_future_usage`` saves the
card as the customer's method (with the gateway's credential and the network transaction id of
that customer-initiated charge), found again by fingerprint; merchant-initiated charges of a
method of ours carry that id; off-session, a card that needs authentication waits in
``requires_action`` (no failover). The simulator's side of it first."""

from __future__ import annotations

import pytest

from apps.core.models import DurableTask
from apps.customers.services import customer_create
from apps.payments.gateways.base import ChargeRequest, GatewayConfig, GatewayStatus, Outcome, SavedMethod
from apps.payments.gateways.simulator.gateway import SimulatorGateway, network_transaction_id_for
from apps.payments.models import (
    GatewayAccount,
    PaymentAttempt,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodCredential,
    SimulatorCharge,
    SimulatorToken,
)
from apps.payments.services import (
    PaymentError,
    payment_attempt_apply_gateway_truth,
    payment_attempt_resolve,
    payment_confirm,
    payment_intent_create,
    payment_saved_method_record,
)
from apps.payments.services.methods import payment_method_create, payment_saved_method_keep
from apps.webhooks.models import OutboundEvent
from tests.payments.conftest import configure


def simulator(account: str = "primary") -> SimulatorGateway:
    return SimulatorGateway(GatewayConfig(account_id=account, settings={}))


def charge(attempt_id: str, method: str = "pm_card_visa", **kw) -> ChargeRequest:
    return ChargeRequest(attempt_id=attempt_id, amount=1000, currency="USD", payment_method=method, **kw)


def credentials(method: PaymentMethod) -> dict[str, str]:
    return {
        c.gateway_account.name: c.credential["reference"]
        for c in PaymentMethodCredential.objects.filter(method=method).select_related("gateway_account")
    }


def pay(method: str, **kw) -> PaymentIntent:
    return payment_intent_create(amount=5000, currency="usd", payment_method=method, confirm=True, **kw)


# --------------------------------------------------------------------------- the simulator


def test_simulator_save_with_the_same_idempotency_key_saves_once(mesh):
    gateway = simulator()

    first = gateway.save_method(
        token="pm_card_visa", customer_reference="cus_1", idempotency_key="paym_a:save"
    )
    again = gateway.save_method(
        token="pm_card_visa", customer_reference="cus_1", idempotency_key="paym_a:save"
    )
    other = gateway.save_method(
        token="pm_card_visa", customer_reference="cus_1", idempotency_key="paym_b:save"
    )

    assert first.ok and first.reference == again.reference != other.reference
    assert SimulatorToken.objects.filter(account="primary").count() == 2
    assert first.network_transaction_id == network_transaction_id_for(first.reference)
    assert len(first.network_transaction_id) == 15 and first.network_transaction_id.isdigit()
    assert first.fingerprint == other.fingerprint  # the same card


def test_simulator_charge_saving_the_card_saves_it_once_and_reports_the_network_id(mesh):
    gateway = simulator()
    request = charge("pay_s_1", setup_future_usage="off_session", customer_reference="cus_1")

    result = gateway.authorize(request)
    replay = gateway.authorize(request)

    assert result.outcome == Outcome.SUCCEEDED and result.saved is not None
    token = SimulatorToken.objects.get(account="primary")
    assert result.saved.reference == replay.saved.reference == token.token  # saved once
    assert token.payment_method == "pm_card_visa" and token.customer_reference == "cus_1"
    stored = SimulatorCharge.objects.get(attempt_id="pay_s_1")
    assert result.network_transaction_id == network_transaction_id_for(stored.reference)
    assert result.saved.network_transaction_id == result.network_transaction_id
    # the saved token charges at this account afterwards
    assert gateway.authorize(charge("pay_s_2", token.token)).outcome == Outcome.SUCCEEDED


def test_simulator_off_session_charge_records_the_network_id_and_reports_none(mesh):
    gateway = simulator()

    result = gateway.authorize(charge("pay_m_1", off_session=True, network_transaction_id="123456789012345"))

    assert result.outcome == Outcome.SUCCEEDED
    assert result.network_transaction_id == "" and result.saved is None
    assert result.raw["network_transaction_id_passed"] == "123456789012345"
    stored = SimulatorCharge.objects.get(attempt_id="pay_m_1")
    assert stored.off_session and stored.network_transaction_id_passed == "123456789012345"


@pytest.mark.parametrize("card", ["pm_card_authenticationRequired", "pm_card_threeDSecure2Required"])
def test_simulator_card_needing_authentication_is_declined_off_session(mesh, card):
    gateway = simulator()

    off = gateway.authorize(charge("pay_a_1", card, off_session=True))
    on = gateway.authorize(charge("pay_a_2", card))

    assert (off.outcome, off.status, off.decline_code) == (
        Outcome.DECLINED_SOFT,
        GatewayStatus.DECLINED,
        "authentication_required",
    )
    assert on.outcome == Outcome.REQUIRES_ACTION  # on session: the challenge, as before
    assert not SimulatorCharge.objects.filter(attempt_id__in=["pay_a_1", "pay_a_2"]).exists()


# --------------------------------------------------------------------------- saving while charging


def test_a_payment_saving_the_card_makes_the_customers_method_and_a_second_finds_it(mesh):
    # given a customer paying twice with the same card, asking to save it each time
    jenny = customer_create(email="jenny@example.com")
    first = pay("pm_card_visa", customer_id=jenny.pk, setup_future_usage="off_session")

    # then the first payment saved a method of ours for her with primary's own credential and the
    # network transaction id of that customer-initiated charge
    assert first.status == "succeeded" and first.setup_future_usage == "off_session"
    method = PaymentMethod.objects.get(pk=first.saved_payment_method)
    assert method.customer_id == jenny.pk and (method.brand, method.last4) == ("visa", "4242")
    charged = SimulatorCharge.objects.get(attempt_id=f"{first.id}_1")
    assert credentials(method) == {"primary": charged.saved_token}
    assert charged.saved_token.startswith("simtok_primary_")
    assert method.network_transaction_id == network_transaction_id_for(charged.reference)
    assert PaymentIntent.objects.get(pk=first.id).saved_payment_method == method.pk  # stored

    # when the second payment is charged at secondary (primary is down)
    configure("primary", down=True)
    second = pay("pm_card_visa", customer_id=jenny.pk, setup_future_usage="on_session")

    # then the card is recognised by its fingerprint: the same method, secondary's credential added,
    # the first network transaction id kept
    assert second.status == "succeeded" and second.gateway_account.name == "secondary"
    assert second.saved_payment_method == method.pk
    assert PaymentMethod.objects.filter(customer=jenny).count() == 1
    secondary_charge = SimulatorCharge.objects.get(attempt_id=f"{second.id}_2")
    assert credentials(method) == {"primary": charged.saved_token, "secondary": secondary_charge.saved_token}
    method.refresh_from_db()
    assert method.network_transaction_id == network_transaction_id_for(charged.reference)


def test_saving_needs_a_customer_and_a_known_usage(mesh):
    with pytest.raises(PaymentError) as no_customer:
        pay("pm_card_visa", setup_future_usage="off_session")
    assert (no_customer.value.param, no_customer.value.code) == ("setup_future_usage", "parameter_invalid")
    jenny = customer_create(email="jenny@example.com")
    with pytest.raises(PaymentError) as unknown:
        pay("pm_card_visa", customer_id=jenny.pk, setup_future_usage="forever")
    assert unknown.value.param == "setup_future_usage"
    assert not PaymentIntent.objects.exists()


def test_a_declined_payment_saves_nothing(mesh):
    jenny = customer_create(email="jenny@example.com")

    intent = pay("pm_card_chargeDeclined", customer_id=jenny.pk, setup_future_usage="off_session")

    assert intent.status == "failed" and intent.saved_payment_method == ""
    assert not PaymentMethod.objects.exists() and not SimulatorToken.objects.exists()


def test_a_method_of_ours_with_setup_future_usage_only_records_consent(mesh):
    jenny = customer_create(email="jenny@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    tokens = SimulatorToken.objects.count()

    intent = pay(method.pk, customer_id=jenny.pk, setup_future_usage="off_session")

    assert intent.status == "succeeded" and intent.setup_future_usage == "off_session"
    assert intent.saved_payment_method == ""  # saved already: nothing saved again
    assert SimulatorToken.objects.count() == tokens
    assert PaymentMethod.objects.count() == 1


def test_saving_the_card_failing_leaves_the_charge_and_retries_durably(mesh, monkeypatch):
    # given saving the method fails after the charge succeeded (e.g. a database error)
    jenny = customer_create(email="jenny@example.com")

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("apps.payments.services.methods.payment_method_from_saved", broken)
    intent = pay("pm_card_visa", customer_id=jenny.pk, setup_future_usage="off_session")

    # then the charge stands, nothing is saved yet, and a durable task holds the save
    assert intent.status == "succeeded" and intent.saved_payment_method == ""
    assert SimulatorCharge.objects.filter(attempt_id__startswith=intent.id).count() == 1
    assert not PaymentMethod.objects.exists()
    monkeypatch.undo()
    task = DurableTask.objects.get(idempotency_key=f"saved-method:{intent.id}")
    assert "simtok_" not in str(task.kwargs)  # the credential travels sealed

    # when the task runs, the method is saved and named by the payment
    payment_saved_method_record(**task.kwargs)
    payment_saved_method_record(**task.kwargs)  # idempotent
    intent.refresh_from_db()
    method = PaymentMethod.objects.get(customer=jenny)
    assert intent.saved_payment_method == method.pk
    assert list(credentials(method)) == ["primary"]


def test_saved_method_keep_ignores_an_answer_that_saved_nothing(mesh):
    jenny = customer_create(email="jenny@example.com")
    intent = PaymentIntent(id="pay_x", payment_method="pm_card_visa", customer_id=jenny.pk)
    intent.setup_future_usage = "off_session"
    account = GatewayAccount.objects.get(name="primary")

    payment_saved_method_keep(intent, account, SavedMethod(False, code="gateway_error"), "")

    assert intent.saved_payment_method == "" and not PaymentMethod.objects.exists()


# --------------------------------------------------------------------------- merchant-initiated


def test_a_customer_initiated_charge_gives_a_saved_method_its_network_id_first_one_wins(mesh):
    jenny = customer_create(email="jenny@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    saved_with = method.network_transaction_id  # the save's own (the zero-value check's)
    PaymentMethod.objects.filter(pk=method.pk).update(network_transaction_id="")

    first = pay(method.pk, customer_id=jenny.pk)
    pay(method.pk, customer_id=jenny.pk)
    pay(method.pk, customer_id=jenny.pk, off_session=True)

    method.refresh_from_db()
    charged = SimulatorCharge.objects.get(attempt_id=f"{first.id}_1")
    assert saved_with and method.network_transaction_id == network_transaction_id_for(charged.reference)


def test_an_off_session_charge_of_a_saved_method_passes_its_network_id(mesh):
    jenny = customer_create(email="jenny@example.com")
    saving = pay("pm_card_visa", customer_id=jenny.pk, setup_future_usage="off_session")
    method = PaymentMethod.objects.get(pk=saving.saved_payment_method)

    later = pay(method.pk, customer_id=jenny.pk, off_session=True)

    assert later.status == "succeeded"
    mit = SimulatorCharge.objects.get(attempt_id=f"{later.id}_1")
    assert mit.off_session and mit.payment_method == credentials(method)["primary"]
    assert mit.network_transaction_id_passed == method.network_transaction_id != ""


def test_off_session_authentication_required_waits_for_the_customer_without_failover(mesh):
    # given a card that always needs authentication, saved for the customer
    jenny = customer_create(email="jenny@example.com")
    method, _ = payment_method_create(
        gateway="primary", token="pm_card_authenticationRequired", customer=jenny
    )
    payment_method_create(gateway="secondary", token="pm_card_authenticationRequired", customer=jenny)

    # when it is charged off-session
    intent = pay(method.pk, customer_id=jenny.pk, off_session=True)

    # then the payment waits for the customer: no other gateway was tried, nothing charged
    assert intent.status == "requires_action"
    assert intent.next_action == {"type": "authenticate", "reason": "authentication_required"}
    assert intent.last_error["code"] == "authentication_required"
    attempts = list(
        PaymentAttempt.objects.filter(intent=intent).values_list("gateway_account__name", "status")
    )
    assert attempts == [("primary", "declined")]
    assert not SimulatorCharge.objects.filter(attempt_id__startswith=intent.id).exists()
    types = list(OutboundEvent.objects.filter(object_id=intent.id).values_list("type", flat=True))
    assert "payment.requires_action" in types and "payment.failed" not in types

    # and it can be confirmed again (the customer back, or the next dunning retry)
    again = payment_confirm(intent_id=intent.id)
    assert again.status == "requires_action"
    assert PaymentAttempt.objects.filter(intent=intent).count() == 2


def test_on_session_authentication_stays_a_challenge(mesh):
    jenny = customer_create(email="jenny@example.com")

    intent = pay("pm_card_authenticationRequired", customer_id=jenny.pk)

    assert intent.status == "requires_action"
    assert intent.attempts.get().status == "requires_action"  # waiting at the gateway


def test_the_apis_save_is_keyed_by_the_new_methods_id_and_keeps_the_network_id(mesh):
    jenny = customer_create(email="jenny@example.com")

    method, created = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)

    reference = credentials(method)["primary"]
    key = f"{method.pk}:save:primary"  # what the gateway was sent: a retried save saves once
    again = simulator().save_method(token="pm_card_visa", customer_reference=jenny.pk, idempotency_key=key)
    assert created and again.reference == reference
    assert method.network_transaction_id == network_transaction_id_for(reference)


def test_a_card_saved_by_a_charge_whose_answer_was_lost_is_saved_when_resolved(mesh):
    # given a payment saving the card whose answer is lost after the charge (and the save) happened
    jenny = customer_create(email="jenny@example.com")
    intent = pay("pm_sim_timeout_after_charge", customer_id=jenny.pk, setup_future_usage="off_session")
    assert intent.status == "processing" and intent.saved_payment_method == ""

    # when the resolver looks the charge up
    payment_attempt_resolve(attempt_id=f"{intent.id}_1")

    # then the payment succeeded and the card the charge saved is the customer's method
    intent.refresh_from_db()
    charged = SimulatorCharge.objects.get(attempt_id=f"{intent.id}_1")
    assert intent.status == "succeeded" and intent.saved_payment_method.startswith("paym_")
    method = PaymentMethod.objects.get(pk=intent.saved_payment_method)
    assert credentials(method) == {"primary": charged.saved_token}
    assert method.network_transaction_id == network_transaction_id_for(charged.reference)


def test_a_card_saved_by_a_charge_the_customer_authenticated_is_saved_then(mesh):
    # given a payment saving a card that asks for 3-D Secure, the customer on session
    jenny = customer_create(email="jenny@example.com")
    intent = pay("pm_card_authenticationRequired", customer_id=jenny.pk, setup_future_usage="off_session")
    assert intent.status == "requires_action" and not SimulatorToken.objects.exists()

    # when the customer completes the challenge and the processor's news is applied
    news = simulator().action_complete(attempt_id=f"{intent.id}_1")
    payment_attempt_apply_gateway_truth(attempt_id=f"{intent.id}_1", result=news)

    # then the card the authenticated charge saved is the customer's method
    intent.refresh_from_db()
    assert intent.status == "succeeded"
    method = PaymentMethod.objects.get(pk=intent.saved_payment_method)
    charged = SimulatorCharge.objects.get(attempt_id=f"{intent.id}_1")
    assert method.customer_id == jenny.pk and method.last4 == "3184"
    assert credentials(method) == {"primary": charged.saved_token}
    assert method.network_transaction_id == network_transaction_id_for(charged.reference)
