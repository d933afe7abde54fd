"""Payment methods of ours (``paym_...``): credentials per gateway account, fingerprint
duplicates, routing that knows which gateways can charge a method, and the simulator's own tokens."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.customers.services import customer_create
from apps.payments.config import mesh_config_changed
from apps.payments.gateways.base import ChargeRequest, Outcome
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import GatewayAccount, PaymentMethod, PaymentMethodCredential, SimulatorCharge
from apps.payments.services import PaymentError, payment_intent_create
from apps.payments.services.methods import (
    payment_method_attach,
    payment_method_create,
    payment_method_detach,
)
from apps.payments.services.setup import gateway_client
from tests.payments.conftest import configure


def charges(intent) -> list[str]:
    return list(
        SimulatorCharge.objects.filter(attempt_id__startswith=intent.id + "_").values_list(
            "account", flat=True
        )
    )


def pay(method: str, **kw):
    return payment_intent_create(amount=5000, currency="usd", payment_method=method, confirm=True, **kw)


def test_saved_method_has_display_details_and_an_encrypted_credential(mesh):
    method, created = payment_method_create(gateway="primary", token="pm_card_mastercard")

    assert created and method.id.startswith("paym_") and not method.id.startswith("pm_")
    assert (method.brand, method.last4, method.country, method.funding) == (
        "mastercard",
        "4444",
        "US",
        "credit",
    )
    assert (method.exp_month, method.exp_year) == (12, 2034) and method.fingerprint
    credential = PaymentMethodCredential.objects.get(method=method)
    assert credential.gateway_account.name == "primary"
    reference = credential.credential["reference"]
    assert reference.startswith("simtok_primary_")
    assert reference not in credential.credential_encrypted  # encrypted at rest
    assert credential.reference_last4 == reference[-4:]


def test_the_same_card_saved_twice_for_a_customer_is_one_method(mesh):
    jenny = customer_create(email="jenny@example.com")
    first, created = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    again, created_again = payment_method_create(gateway="secondary", token="pm_card_visa", customer=jenny)

    assert created and not created_again and again.pk == first.pk
    assert PaymentMethod.objects.filter(customer=jenny).count() == 1
    assert {c.gateway_account.name for c in first.credentials.all()} == {"primary", "secondary"}
    # another card, or the same card without a customer, is a method of its own
    other, _ = payment_method_create(gateway="primary", token="pm_card_amex", customer=jenny)
    loose, _ = payment_method_create(gateway="primary", token="pm_card_visa")
    assert len({first.pk, other.pk, loose.pk}) == 3


def test_attach_and_detach(mesh):
    jenny, bob = customer_create(email="jenny@example.com"), customer_create(email="bob@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa")

    assert payment_method_attach(method=method, customer=jenny).customer_id == jenny.pk
    with pytest.raises(PaymentError) as other:
        payment_method_attach(method=method, customer=bob)
    assert other.value.code == "payment_method_unexpected_state"
    assert payment_method_detach(method=method).customer_id is None
    duplicate, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    with pytest.raises(PaymentError) as dup:
        payment_method_attach(method=method, customer=jenny)
    assert dup.value.code == "payment_method_duplicate" and duplicate.pk in str(dup.value)


def test_refused_tokens_store_nothing(mesh):
    with pytest.raises(PaymentError) as unknown:
        payment_method_create(gateway="primary", token="pm_nope")
    assert (unknown.value.code, unknown.value.param) == ("resource_missing", "token")
    with pytest.raises(PaymentError) as gateway:
        payment_method_create(gateway="nowhere", token="pm_card_visa")
    assert (gateway.value.code, gateway.value.param) == ("resource_missing", "gateway")
    assert not PaymentMethod.objects.exists()


def test_a_simulator_account_charges_only_its_own_tokens(mesh):
    primary = gateway_client(GatewayAccount.objects.get(name="primary"))
    secondary = gateway_client(GatewayAccount.objects.get(name="secondary"))
    assert isinstance(primary, SimulatorGateway)
    saved = primary.save_method(token="pm_card_visa", customer_reference=None)
    assert saved.ok and saved.reference.startswith("simtok_primary_")

    def charge(gateway, method, n):
        return gateway.authorize(
            ChargeRequest(attempt_id=f"pay_t{n}_1", amount=100, currency="USD", payment_method=method)
        )

    assert charge(primary, saved.reference, 1).outcome == Outcome.SUCCEEDED
    refused = charge(secondary, saved.reference, 2)
    assert (refused.outcome, refused.decline_code) == (Outcome.DECLINED_HARD, "invalid_payment_method")
    assert charge(secondary, "pm_card_visa", 3).outcome == Outcome.SUCCEEDED  # test tokens everywhere
    assert not secondary.save_method(token=saved.reference, customer_reference=None).ok


def test_a_saved_method_is_charged_with_the_gateways_credential(mesh):
    method, _ = payment_method_create(gateway="secondary", token="pm_card_visa")

    intent = pay(method.id)

    assert intent.status == "succeeded" and intent.gateway_account.name == "secondary"
    assert intent.card["brand"] == "visa" and intent.payment_method == method.id
    assert charges(intent) == ["secondary"]
    charge = SimulatorCharge.objects.get(attempt_id=f"{intent.id}_1")
    assert charge.payment_method.startswith("simtok_secondary_")
    # primary was skipped, and why, with the routing decision
    assert intent.routing["decision"]["skipped"] == {"primary": "no credential and no vault route"}
    assert intent.routing["skipped"] == [{"gateway": "primary", "reason": "no credential and no vault route"}]


def test_failover_to_a_gateway_with_a_credential_charges_once(mesh):
    jenny = customer_create(email="jenny@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    payment_method_create(gateway="secondary", token="pm_card_visa", customer=jenny)
    configure("primary", down=True)

    intent = pay(method.id, customer_id=jenny.pk)

    assert intent.status == "succeeded" and intent.gateway_account.name == "secondary"
    assert [a.gateway_account.name for a in intent.attempts.order_by("number")] == ["primary", "secondary"]
    assert charges(intent) == ["secondary"]


def test_a_method_saved_only_at_a_gateway_that_is_down_fails_cleanly(mesh):
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa")
    configure("primary", down=True)

    intent = pay(method.id)

    assert intent.status == "failed" and charges(intent) == []
    assert [a.gateway_account.name for a in intent.attempts.all()] == ["primary"]  # never secondary
    assert intent.last_error["code"] == "payment_method_unreachable"
    assert intent.last_error["skipped"] == {
        "primary": "already tried",
        "secondary": "no credential and no vault route",
    }
    assert intent.last_error["after"]["code"] == "gateway_error"
    assert {"gateway": "secondary", "reason": "no credential and no vault route"} in intent.routing["skipped"]


def test_a_method_no_enabled_gateway_can_charge_fails_without_an_attempt(mesh):
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa")
    GatewayAccount.objects.filter(name="primary").update(enabled=False)
    mesh_config_changed()
    intent = pay(method.id)

    assert intent.status == "failed" and not intent.attempts.exists()
    assert intent.last_error["code"] == "payment_method_unreachable"
    assert intent.last_error["skipped"] == {
        "primary": "disabled",
        "secondary": "no credential and no vault route",
    }


def test_a_method_of_another_customer_or_unknown_is_refused(mesh):
    jenny, bob = customer_create(email="jenny@example.com"), customer_create(email="bob@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)

    with pytest.raises(PaymentError) as other:
        pay(method.id, customer_id=bob.pk)
    assert (other.value.code, other.value.param) == ("payment_method_customer_mismatch", "payment_method")
    with pytest.raises(PaymentError) as missing:
        pay("paym_nope")
    assert missing.value.code == "resource_missing"


def test_test_tokens_are_unchanged(mesh):
    intent = pay("pm_card_visa")

    assert intent.status == "succeeded" and intent.gateway_account.name == "primary"
    assert "skipped" not in intent.routing and intent.payment_method == "pm_card_visa"


def test_operators_see_which_gateways_can_charge_a_method_never_the_reference(mesh, host_client):
    jenny = customer_create(email="jenny@example.com")
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa", customer=jenny)
    payment_method_create(gateway="secondary", token="pm_card_visa", customer=jenny)
    references = [c.credential["reference"] for c in method.credentials.all()]
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))

    listing = client.get("/admin/payments/paymentmethod/")
    page = client.get(f"/admin/payments/paymentmethod/{method.pk}/change/")
    add = client.get("/admin/payments/paymentmethod/add/")

    assert listing.status_code == 200 and b"primary, secondary" in listing.content
    assert "visa •••• 4242 · 12/".encode() in listing.content and jenny.pk.encode() in listing.content
    assert page.status_code == 200 and method.pk.encode() in page.content
    assert f"...{references[0][-4:]}".encode() in page.content
    assert not any(ref.encode() in page.content or ref.encode() in listing.content for ref in references)
    assert add.status_code == 403
