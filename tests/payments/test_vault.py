"""The vault port: a payment method saved only at a gateway that is down (or whose breaker is open)
reaches another gateway through a vault, is charged there once, and the target's own credential
is stored so the next charge goes direct; a method with no vault route fails cleanly with its
reasons. Stripe's Forwarding adapter against recorded answers (HTTP mocked with ``responses``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs

import pytest
import responses
from django.contrib import admin
from django.db.models import Sum

from apps.customers.services import customer_create
from apps.ledger.models import Entry
from apps.payments.admin import PaymentIntentAdmin
from apps.payments.breaker import CircuitBreaker
from apps.payments.config import mesh_config_changed
from apps.payments.gateways.adyen import AdyenGateway
from apps.payments.gateways.base import ChargeRequest, Gateway, GatewayConfig, GatewayStatus, Outcome
from apps.payments.gateways.registry import vault_for
from apps.payments.gateways.simulator.vault import SimulatorVault
from apps.payments.gateways.stripe.forwarding import StripeForwarding
from apps.payments.models import (
    GatewayAccount,
    PaymentIntent,
    PaymentMethod,
    PaymentMethodCredential,
    RoutingRule,
    SimulatorCharge,
)
from apps.payments.services import payment_attempt_resolve, payment_intent_create
from apps.payments.services.methods import payment_method_create
from tests.payments.conftest import configure

FIXTURES = Path(__file__).parent / "fixtures" / "stripe_forwarding"
FORWARDING = "https://api.stripe.com/v1/forwarding/requests"
ADYEN_PAYMENTS = "https://checkout-test.adyen.com/v72/payments"
ATTEMPT = "pay_7Hq2_2"
STRIPE_PM = "pm_1QfWd2LkdIwHu7ixVbYc3Ffw"


def pay(method: str, **kw):
    return payment_intent_create(amount=5000, currency="usd", payment_method=method, confirm=True, **kw)


def charges(intent) -> list[tuple[str, str]]:
    return list(
        SimulatorCharge.objects.filter(attempt_id__startswith=intent.id + "_").values_list(
            "account", "attempt_id"
        )
    )


def cleared(intent, gateway: str) -> int:
    """What the ledger says the gateway took for the payment (its clearing account's debits)."""
    found = Entry.objects.filter(
        event__stream=intent.id, account__code=f"processor_clearing:{gateway}", side="D"
    ).aggregate(total=Sum("amount"))
    return found["total"] or 0


def credentials(method) -> dict[str, str]:
    return {
        c.gateway_account.name: c.credential["reference"]
        for c in PaymentMethodCredential.objects.filter(method=method).select_related("gateway_account")
    }


@pytest.fixture
def saved_at_primary(mesh):
    """A card saved only at ``primary``, whose simulator vault is on."""
    configure("primary", vault=True)
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa")
    return method


def primary_unavailable(how: str, settings) -> None:
    if how == "outage":
        configure("primary", vault=True, down=True)
    else:
        settings.CIRCUIT_BREAKER = {
            **settings.CIRCUIT_BREAKER,
            "consecutive_failures": 2,
            "cooldown_seconds": 60,
        }
        for _ in range(2):
            CircuitBreaker("primary").record(success=False)
        assert CircuitBreaker("primary").state().state == "open"


# --------------------------------------------------------------------------- the mesh


@pytest.mark.parametrize("how", ["outage", "breaker"])
def test_failover_through_the_vault_charges_once_then_goes_direct(saved_at_primary, settings, how):
    method = saved_at_primary
    primary_unavailable(how, settings)

    intent = pay(method.id)

    assert intent.status == "succeeded" and intent.gateway_account.name == "secondary"
    attempts = list(intent.attempts.order_by("number"))
    last = attempts[-1]
    assert [a.gateway_account.name for a in attempts] == (
        ["primary", "secondary"] if how == "outage" else ["secondary"]
    )
    assert charges(intent) == [("secondary", last.id)]  # charged once, at secondary
    assert cleared(intent, "secondary") == 5000 and cleared(intent, "primary") == 0
    route = {"via": "vault", "vault": "simulator", "from": "primary"}
    assert intent.routing["decision"]["via"] == {"secondary": route}
    assert intent.routing["via"] == {last.id: route}
    assert any("simulator vault of primary" in r for r in intent.routing["decision"]["reasons"])
    shown = str(PaymentIntentAdmin(PaymentIntent, admin.site).routing_reasons(intent))
    assert f"{last.id}: charged through the simulator vault of primary" in shown  # what operators see
    # the card went from simulator to simulator: secondary now holds its own credential
    stored = credentials(method)
    assert stored["primary"].startswith("simtok_primary_")
    assert stored["secondary"].startswith("simtok_secondary_")

    again = pay(method.id)

    assert again.status == "succeeded" and again.gateway_account.name == "secondary"
    assert "via" not in again.routing and "via" not in again.routing["decision"]
    [(account, attempt_id)] = charges(again)
    assert account == "secondary"
    assert SimulatorCharge.objects.get(attempt_id=attempt_id).payment_method == stored["secondary"]
    assert credentials(method) == stored  # nothing stored twice


def test_a_lost_answer_through_the_vault_is_resolved_without_a_second_charge(saved_at_primary):
    method = saved_at_primary
    configure("primary", vault=True, down=True)
    configure("secondary", timeout_rate=1.0)

    intent = pay(method.id)

    assert intent.status == "processing"
    attempt = intent.attempts.get(number=2)
    assert attempt.status == "unknown" and attempt.gateway_account.name == "secondary"
    configure("secondary")
    payment_attempt_resolve(attempt_id=attempt.id)

    intent.refresh_from_db()
    assert intent.status == "succeeded"
    assert charges(intent) == [("secondary", attempt.id)]
    assert cleared(intent, "secondary") == 5000


def test_a_method_without_a_vault_route_fails_cleanly_with_its_reasons(mesh):
    method, _ = payment_method_create(gateway="primary", token="pm_card_visa")  # no vault offered
    configure("primary", down=True)

    intent = pay(method.id)

    assert intent.status == "failed" and charges(intent) == []
    assert intent.last_error["code"] == "payment_method_unreachable"
    assert intent.last_error["skipped"] == {
        "primary": "already tried",
        "secondary": "no credential and no vault route",
    }
    assert {"gateway": "secondary", "reason": "no credential and no vault route"} in intent.routing["skipped"]
    assert "secondary: no credential and no vault route" in intent.last_error["message"]
    assert set(credentials(method)) == {"primary"}


def test_vaults_are_offered_per_account_and_reach_only_what_they_can():
    simulator = GatewayConfig(account_id="primary", settings={"vault": True})
    assert vault_for("simulator", GatewayConfig(account_id="primary")) is None
    vault = vault_for("simulator", simulator)
    assert isinstance(vault, SimulatorVault)
    assert vault.can_reach(target_kind="simulator", target=GatewayConfig(account_id="secondary"))
    assert not vault.can_reach(target_kind="simulator", target=simulator)  # not itself
    assert not vault.can_reach(target_kind="adyen", target=GatewayConfig(account_id="adyen_main"))

    stripe_main = GatewayConfig(
        account_id="stripe_main", credentials={"secret_key": "sk_test_x"}, settings={"forwarding": True}
    )
    assert vault_for("stripe", GatewayConfig(account_id="s", credentials={"secret_key": "sk_test_x"})) is None
    forwarding = vault_for("stripe", stripe_main)
    assert isinstance(forwarding, StripeForwarding)
    assert forwarding.can_reach(target_kind="adyen", target=GatewayConfig(account_id="adyen_main"))
    assert not forwarding.can_reach(target_kind="simulator", target=GatewayConfig(account_id="secondary"))
    assert vault_for("adyen", GatewayConfig(account_id="adyen_main")) is None  # Adyen offers none here


# --------------------------------------------------------------------------- Stripe Forwarding → Adyen


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def forwarding() -> StripeForwarding:
    return StripeForwarding(
        GatewayConfig(
            account_id="stripe_main", credentials={"secret_key": "sk_test_fwd"}, settings={"forwarding": True}
        )
    )


def adyen() -> Gateway:
    # the port's Gateway (mypy holds its ``notifications`` class attribute invariant)
    return cast(
        Gateway,
        AdyenGateway(
            GatewayConfig(
                account_id="adyen_main",
                credentials={"api_key": "AQE1test-key", "merchant_account": "MarketplaceECOM"},
            )
        ),
    )


def request(**overrides) -> ChargeRequest:
    fields: dict = {
        "attempt_id": ATTEMPT,
        "amount": 1000,
        "currency": "EUR",
        "payment_method": "paym_7Hq2",
        "customer_reference": "cus_42",
    }
    return ChargeRequest(**(fields | overrides))


def forward(rsps: responses.RequestsMock, *answers: tuple[int, dict]):
    for status, body in answers:
        rsps.add(responses.POST, FORWARDING, json=body, status=status)
    return forwarding().forward_charge(
        credential={"reference": STRIPE_PM}, target_kind="adyen", target=adyen(), request=request()
    )


@pytest.fixture
def stripe_api():
    # Unmocked URLs fail: nothing is ever sent to Adyen by us, only to Stripe.
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def sent_form(call) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body.decode() if isinstance(body, bytes) else body)


def test_forwarding_sends_the_card_from_stripe_to_adyen_and_stores_adyens_credential(stripe_api):
    charged = forward(stripe_api, (200, recorded("forward_adyen_authorised")))

    result = charged.result
    assert (result.outcome, result.status) == (Outcome.SUCCEEDED, GatewayStatus.CAPTURED)
    assert result.reference == "QFQTPCQ8HXSKGK82" and result.amount_captured == 1000
    assert result.raw["forwarding_request"] == "fwdreq_1QfWdQLkdIwHu7ixAuth0001"
    assert charged.saved is not None and charged.saved.reference == "M5N7TQ4TG5PFWR50"
    assert charged.saved.extra == {"shopper_reference": "cus_42"}

    [call] = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == f"{ATTEMPT}:forward"
    form = sent_form(call)
    assert form["payment_method"] == [STRIPE_PM]
    assert form["url"] == [ADYEN_PAYMENTS]
    assert [form[f"replacements[{i}]"][0] for i in range(3)] == ["card_number", "card_expiry", "card_cvc"]
    headers = {
        form[f"request[headers][{i}][name]"][0]: form[f"request[headers][{i}][value]"][0] for i in range(3)
    }
    assert headers == {
        "Content-Type": "application/json",
        "X-API-Key": "AQE1test-key",
        "Idempotency-Key": ATTEMPT,  # Adyen's own key: the attempt id, as for a direct charge
    }
    body = json.loads(form["request[body]"][0])
    assert body["paymentMethod"] == {
        "type": "scheme",
        "number": "",
        "expiryMonth": "",
        "expiryYear": "",
        "cvc": "",
    }
    assert body["reference"] == ATTEMPT and body["amount"] == {"value": 1000, "currency": "EUR"}
    assert body["storePaymentMethod"] is True and body["shopperReference"] == "cus_42"
    assert body["recurringProcessingModel"] == "CardOnFile" and body["shopperInteraction"] == "Ecommerce"
    assert "paym_7Hq2" not in form["request[body]"][0]  # our id is no card of Adyen's


def test_a_forwarded_merchant_initiated_charge_goes_without_cvc(stripe_api):
    stripe_api.add(responses.POST, FORWARDING, json=recorded("forward_adyen_authorised"), status=200)

    forwarding().forward_charge(
        credential={"reference": STRIPE_PM},
        target_kind="adyen",
        target=adyen(),
        request=request(off_session=True, network_transaction_id="831106128458302"),
    )

    # a CVC is not kept after use: Stripe is not asked for it, Adyen's body has no field for it
    form = sent_form(stripe_api.calls[0])
    assert [v for k, v in sorted(form.items()) if k.startswith("replacements[")] == [
        ["card_number"],
        ["card_expiry"],
    ]
    body = json.loads(form["request[body]"][0])
    assert "cvc" not in body["paymentMethod"] and body["shopperInteraction"] == "ContAuth"
    assert body["additionalData"]["networkTxReference"] == "831106128458302"


def test_a_forwarded_decline_is_adyens_decline_and_stores_nothing(stripe_api):
    charged = forward(stripe_api, (200, recorded("forward_adyen_refused")))

    assert charged.result.outcome == Outcome.DECLINED_SOFT
    assert charged.result.decline_code == "insufficient_funds" and charged.saved is None


def test_adyen_failing_behind_stripe_is_a_gateway_error(stripe_api):
    charged = forward(stripe_api, (200, recorded("forward_adyen_500")))

    # Adyen documents its 500 as "not processed": nothing charged, the mesh may fail over.
    assert (charged.result.outcome, charged.result.status) == (Outcome.GATEWAY_ERROR, GatewayStatus.ERROR)
    assert charged.saved is None


def test_forwarding_not_enabled_is_a_gateway_error(stripe_api):
    charged = forward(stripe_api, (400, recorded("error_400_forwarding_not_enabled")))

    assert charged.result.outcome == Outcome.GATEWAY_ERROR
    assert "Forwarding is not enabled" in charged.result.message


def test_a_stripe_5xx_is_unknown_and_the_retry_sends_the_same_keys(stripe_api):
    first = forward(stripe_api, (500, recorded("error_500")))
    assert (first.result.outcome, first.result.status) == (Outcome.UNKNOWN, GatewayStatus.UNKNOWN)

    again = forward(stripe_api, (200, recorded("forward_adyen_authorised")))

    assert again.result.outcome == Outcome.SUCCEEDED
    keys = [call.request.headers["Idempotency-Key"] for call in stripe_api.calls]
    assert keys == [f"{ATTEMPT}:forward"] * 2
    bodies = [sent_form(call)["request[body]"][0] for call in stripe_api.calls]
    assert bodies[0] == bodies[1]  # the same request, so Stripe answers the first one's result


def test_a_lost_stripe_answer_is_unknown(stripe_api):
    stripe_api.add(responses.POST, FORWARDING, body=ConnectionResetError("connection reset by peer"))
    charged = forwarding().forward_charge(
        credential={"reference": STRIPE_PM}, target_kind="adyen", target=adyen(), request=request()
    )

    assert charged.result.outcome == Outcome.UNKNOWN  # Stripe may have forwarded it


# --------------------------------------------------------------------------- a Stripe-only marketplace adds Adyen


@pytest.fixture
def stripe_and_adyen(mesh):
    """Gateway accounts ``stripe_main`` (Forwarding enabled) and ``adyen_main``, routed in that
    order, and a card saved at Stripe only (a PaymentMethod ``pm_...``), of no customer yet."""
    stripe_main = GatewayAccount(name="stripe_main", kind="stripe", settings={"forwarding": True})
    stripe_main.credentials = {"secret_key": "sk_test_fwd"}
    stripe_main.save()
    adyen_main = GatewayAccount(name="adyen_main", kind="adyen")
    adyen_main.credentials = {"api_key": "AQE1test-key", "merchant_account": "MarketplaceECOM"}
    adyen_main.save()
    RoutingRule.objects.create(
        name="stripe then adyen",
        priority=1,
        candidates=[{"gateway": "stripe_main"}, {"gateway": "adyen_main"}],
    )
    mesh_config_changed()
    method = PaymentMethod.objects.create(brand="visa", last4="4242", country="US", funding="credit")
    credential = PaymentMethodCredential(method=method, gateway_account=stripe_main)
    credential.credential = {"reference": STRIPE_PM}
    credential.save()
    yield method
    CircuitBreaker("stripe_main").reset()
    CircuitBreaker("adyen_main").reset()


def test_a_card_saved_at_stripe_is_charged_at_adyen_through_forwarding_then_direct(
    stripe_and_adyen, stripe_api, settings
):
    method = stripe_and_adyen
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 2, "cooldown_seconds": 60}
    for _ in range(2):
        CircuitBreaker("stripe_main").record(success=False)  # Stripe's payments API is down
    jenny = customer_create(email="jenny@example.com")
    answer = recorded("forward_adyen_authorised")  # Adyen stores the card for the shopper we name
    adyens = json.loads(answer["response_details"]["body"])
    adyens["additionalData"]["tokenization.shopperReference"] = jenny.pk
    answer["response_details"]["body"] = json.dumps(adyens)
    stripe_api.add(responses.POST, FORWARDING, json=answer)

    intent = payment_intent_create(
        amount=1000, currency="eur", payment_method=method.id, customer_id=jenny.pk, confirm=True
    )

    assert intent.status == "succeeded" and intent.gateway_account.name == "adyen_main"
    [attempt] = intent.attempts.all()
    assert attempt.reference == "QFQTPCQ8HXSKGK82"
    assert intent.routing["decision"]["skipped"] == {"stripe_main": "circuit open"}
    assert intent.routing["via"] == {
        attempt.id: {"via": "vault", "vault": "stripe_forwarding", "from": "stripe_main"}
    }
    assert cleared(intent, "adyen_main") == 1000
    [forwarded] = stripe_api.calls
    assert forwarded.request.headers["Idempotency-Key"] == f"{attempt.id}:forward"
    adyen_credential = PaymentMethodCredential.objects.get(method=method, gateway_account__name="adyen_main")
    forwarded_body = json.loads(sent_form(forwarded)["request[body]"][0])
    assert forwarded_body["shopperReference"] == jenny.pk and forwarded_body["storePaymentMethod"] is True
    assert adyen_credential.credential == {"reference": "M5N7TQ4TG5PFWR50", "shopper_reference": jenny.pk}

    # the next charge goes to Adyen directly, with Adyen's own stored method
    stripe_api.add(responses.POST, ADYEN_PAYMENTS, json=recorded_adyen("payment_authorised"))
    again = payment_intent_create(
        amount=1000, currency="eur", payment_method=method.id, customer_id=jenny.pk, confirm=True
    )

    assert again.status == "succeeded" and again.gateway_account.name == "adyen_main"
    assert "via" not in again.routing
    sent = json.loads(stripe_api.calls[1].request.body)
    assert sent["paymentMethod"] == {"type": "scheme", "storedPaymentMethodId": "M5N7TQ4TG5PFWR50"}
    assert sent["shopperReference"] == jenny.pk
    assert stripe_api.calls[1].request.headers["Idempotency-Key"] == again.attempts.get().id


def recorded_adyen(name: str) -> dict:
    return json.loads((FIXTURES.parent / "adyen" / f"{name}.json").read_text())


def test_a_lost_forwarding_answer_is_replayed_through_stripe_with_the_same_keys(
    stripe_and_adyen, stripe_api, settings
):
    method = stripe_and_adyen
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 2, "cooldown_seconds": 60}
    for _ in range(2):
        CircuitBreaker("stripe_main").record(success=False)
    stripe_api.add(responses.POST, FORWARDING, json=recorded("error_500"), status=500)

    intent = payment_intent_create(amount=1000, currency="eur", payment_method=method.id, confirm=True)

    [attempt] = intent.attempts.all()
    assert intent.status == "processing" and attempt.status == "unknown"  # never failed over
    stripe_api.add(responses.POST, FORWARDING, json=recorded("forward_adyen_authorised"))
    payment_attempt_resolve(attempt_id=attempt.id)  # Adyen has no lookup: the request is replayed

    intent.refresh_from_db()
    assert intent.status == "succeeded" and intent.gateway_account.name == "adyen_main"
    first, replay = stripe_api.calls
    assert first.request.headers["Idempotency-Key"] == replay.request.headers["Idempotency-Key"]
    assert first.request.headers["Idempotency-Key"] == f"{attempt.id}:forward"
    assert sent_form(first) == sent_form(replay)  # the very same request: Stripe's first answer
    assert cleared(intent, "adyen_main") == 1000
