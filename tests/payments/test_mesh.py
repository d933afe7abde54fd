from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote

from apps.ledger.models import Entry
from apps.payments.breaker import CircuitBreaker
from apps.payments.models import PaymentAttempt, PaymentIntent, RoutingRule, SimulatorCharge
from apps.payments.services import (
    PaymentError,
    payment_attempt_resolve,
    payment_cancel,
    payment_capture,
    payment_intent_create,
    payment_refund,
)
from apps.payments.statemachine import IllegalTransition, intent_to
from tests.payments.conftest import configure


def ledger_lines(intent_id: str, event_type: str) -> list[tuple[str, str, int]]:
    return sorted(
        (e.account.code, e.side, e.amount)
        for e in Entry.objects.filter(event__stream=intent_id, event__type=event_type).select_related(
            "account"
        )
    )


def charges(intent: PaymentIntent) -> int:
    return SimulatorCharge.objects.filter(attempt_id__startswith=intent.id + "_").count()


def pay(pm="pm_card_visa", amount=10000, currency="usd", **kw) -> PaymentIntent:
    return payment_intent_create(amount=amount, currency=currency, payment_method=pm, confirm=True, **kw)


def test_automatic_capture_posts_clearing_revenue_and_fee(mesh):
    intent = pay()

    assert intent.status == "succeeded"
    assert intent.amount_received == 10000
    assert intent.gateway_account.name == "primary"
    attempt = intent.attempts.get()
    assert (attempt.id, attempt.status, attempt.fee) == (f"{intent.id}_1", "captured", 320)
    assert ledger_lines(intent.id, "ChargeCaptured") == [
        ("platform_revenue", "C", 10000),
        ("processor_clearing:primary", "C", 320),
        ("processor_clearing:primary", "D", 10000),
        ("processor_fees", "D", 320),
    ]
    assert charges(intent) == 1


def test_manual_capture_partial_then_nothing_more(mesh):
    intent = pay(capture_method="manual")
    assert (intent.status, intent.amount_capturable) == ("requires_capture", 10000)
    assert ledger_lines(intent.id, "ChargeCaptured") == []

    captured = payment_capture(intent_id=intent.id, amount=7000)

    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 7000, 0)
    assert ("processor_clearing:primary", "D", 7000) in ledger_lines(intent.id, "ChargeCaptured")
    with pytest.raises(PaymentError, match="only requires_capture"):
        payment_capture(intent_id=intent.id)


@pytest.mark.parametrize("amount", [0, -5, 10001, 1.5, "100", True])
def test_capture_rejects_bad_amounts(mesh, amount):
    intent = pay(capture_method="manual")
    with pytest.raises(PaymentError):
        payment_capture(intent_id=intent.id, amount=amount)
    assert PaymentIntent.objects.get(pk=intent.id).status == "requires_capture"


def test_cancel_voids_the_authorisation(mesh):
    intent = pay(capture_method="manual")

    canceled = payment_cancel(intent_id=intent.id)

    assert canceled.status == "canceled"
    assert SimulatorCharge.objects.get(attempt_id=f"{intent.id}_1").status == "canceled"
    assert payment_cancel(intent_id=intent.id).status == "canceled"  # idempotent


def test_refunds_partial_several_and_never_above_received(mesh):
    intent = pay(amount=5000)

    first = payment_refund(intent_id=intent.id, amount=2000)
    second = payment_refund(intent_id=intent.id, amount=1000)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert PaymentIntent.objects.get(pk=intent.id).amount_refunded == 3000
    assert ledger_lines(intent.id, "RefundSucceeded") == [
        ("processor_clearing:primary", "C", 1000),
        ("processor_clearing:primary", "C", 2000),
        ("refunds", "D", 1000),
        ("refunds", "D", 2000),
    ]
    with pytest.raises(PaymentError, match="between 1 and 2000"):
        payment_refund(intent_id=intent.id, amount=2001)
    rest = payment_refund(intent_id=intent.id)
    assert rest.amount == 2000
    with pytest.raises(PaymentError):
        payment_refund(intent_id=intent.id, amount=1)
    assert SimulatorCharge.objects.get(attempt_id=f"{intent.id}_1").amount_refunded == 5000


def test_gateway_error_fails_over_to_the_next_gateway_at_once(mesh):
    configure("primary", down=True)

    intent = pay()

    assert intent.status == "succeeded"
    assert list(intent.attempts.values_list("gateway_account__name", "status")) == [
        ("primary", "failed"),
        ("secondary", "captured"),
    ]
    assert intent.gateway_account.name == "secondary"
    assert charges(intent) == 1


def test_breaker_opens_after_consecutive_failures_and_the_gateway_is_skipped(mesh, settings):
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 3, "cooldown_seconds": 60}
    configure("primary", down=True)
    for _ in range(3):
        pay()
    assert CircuitBreaker("primary").state().state == "open"

    intent = pay()

    assert list(intent.attempts.values_list("gateway_account__name", flat=True)) == ["secondary"]
    assert intent.routing["decision"]["skipped"] == {"primary": "circuit open"}


def test_breaker_probes_half_open_after_cooldown_and_closes_on_success(mesh, settings):
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 2, "cooldown_seconds": 0}
    breaker = CircuitBreaker("primary")
    breaker.record(success=False)
    breaker.record(success=False)
    assert breaker.state().state == "open"

    assert breaker.allow() is True  # the single probe
    assert breaker.allow() is False  # nobody else while it probes
    breaker.record(success=True)

    assert breaker.state().state == "closed"
    assert breaker.allow() is True


def test_regional_refusal_fails_over_and_the_sale_is_saved(mesh):
    configure("primary", allowed_card_countries=["US"])

    intent = pay(pm="pm_card_br")

    assert intent.status == "succeeded"
    first, second = intent.attempts.all()
    assert (first.status, first.decline_code) == ("declined", "transaction_not_allowed")
    assert (second.gateway_account.name, second.status) == ("secondary", "captured")


def test_hard_decline_stops_after_one_attempt(mesh):
    intent = pay(pm="pm_card_chargeDeclinedLostCard")

    assert intent.status == "failed"
    assert intent.attempts.count() == 1
    assert intent.last_error["decline_code"] == "lost_card"
    assert intent.last_error["action"] == "stop"
    assert charges(intent) == 0


def test_issuer_advice_try_again_later_is_honoured(mesh):
    intent = pay(pm="pm_card_chargeDeclinedInsufficientFunds")

    assert intent.status == "failed"
    assert intent.attempts.count() == 1
    assert (intent.last_error["advice_code"], intent.last_error["action"]) == (
        "try_again_later",
        "retry_later",
    )


def test_unknown_outcome_blocks_failover_until_resolved_and_charges_once(mesh):
    intent = pay(pm="pm_sim_timeout_after_charge")

    assert intent.status == "processing"
    assert list(intent.attempts.values_list("status", flat=True)) == ["unknown"]
    assert charges(intent) == 1

    payment_attempt_resolve(attempt_id=f"{intent.id}_1")
    payment_attempt_resolve(attempt_id=f"{intent.id}_1")  # a duplicate delivery changes nothing

    intent.refresh_from_db()
    assert intent.status == "succeeded"
    assert list(intent.attempts.values_list("status", flat=True)) == ["captured"]
    assert charges(intent) == 1
    assert len(ledger_lines(intent.id, "ChargeCaptured")) == 4


def test_unknown_attempt_with_no_charge_resolves_and_fails_over(mesh):
    intent = payment_intent_create(amount=100, currency="usd", payment_method="pm_card_visa")
    from apps.payments.models import GatewayAccount
    from apps.payments.statemachine import attempt_to

    intent_to(intent, "processing")
    intent.save()
    attempt = PaymentAttempt.objects.create(
        id=f"{intent.id}_1",
        intent=intent,
        number=1,
        gateway_account=GatewayAccount.objects.get(name="primary"),
    )
    attempt_to(attempt, "unknown")  # the answer was lost before the simulator charged
    attempt.save()
    intent.routing = {"tried": ["primary"]}
    intent.save()

    payment_attempt_resolve(attempt_id=attempt.id)

    intent.refresh_from_db()
    assert intent.status == "succeeded"
    assert list(intent.attempts.values_list("gateway_account__name", "status")) == [
        ("primary", "failed"),
        ("secondary", "captured"),
    ]
    assert charges(intent) == 1


def test_routing_rules_by_currency_with_reasons(mesh):
    RoutingRule.objects.create(
        name="euro",
        priority=1,
        currencies=["EUR"],
        candidates=[{"gateway": "secondary"}, {"gateway": "primary"}],
    )

    eur = pay(currency="eur")
    usd = pay(currency="usd")

    assert eur.gateway_account.name == "secondary"
    assert eur.routing["decision"]["rule"] == "euro"
    assert usd.gateway_account.name == "primary"
    assert "rule 'euro' skipped: currency USD not in ['EUR']" in usd.routing["decision"]["reasons"]


def test_weighted_split_is_deterministic_and_roughly_proportional(mesh):
    RoutingRule.objects.create(
        name="split",
        priority=1,
        mode="weighted",
        candidates=[{"gateway": "primary", "weight": 80}, {"gateway": "secondary", "weight": 20}],
    )
    from apps.payments.routing import route

    firsts = [
        route(payment_intent_create(amount=100, currency="usd", payment_method="pm_card_visa")).candidates[0]
        for _ in range(100)
    ]

    assert 65 <= firsts.count("primary") <= 95
    intent = PaymentIntent.objects.get(pk=PaymentIntent.objects.values_list("pk", flat=True).first())
    assert route(intent).candidates == route(intent).candidates


def test_no_gateway_available_fails_clearly(mesh):
    configure("primary", down=True)
    configure("secondary", down=True)

    intent = pay()

    assert intent.status == "failed"
    assert intent.last_error["code"] == "gateway_error"
    assert charges(intent) == 0


def test_illegal_transition_raises(mesh):
    intent = pay()
    with pytest.raises(IllegalTransition, match="cannot go from succeeded to processing"):
        intent_to(intent, "processing")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"currency": "xyz"}, "currency"),
        ({"payment_method": ""}, "payment_method"),
        ({"capture_method": "later"}, "capture_method"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_created(mesh, kwargs, param):
    args = {"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", **kwargs}
    before = PaymentIntent.objects.count()
    with pytest.raises(PaymentError) as err:
        payment_intent_create(**args)
    assert err.value.param == param
    assert PaymentIntent.objects.count() == before


def test_operator_pages_show_breaker_state_health_and_refuse_edits_of_payments(mesh, host_client):
    from django.contrib.auth import get_user_model

    intent = pay()
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))

    gateways = client.get("/admin/payments/gatewayaccount/")
    health = client.get("/admin/payments/gatewayaccount/health/")
    payment = client.get(f"/admin/payments/paymentintent/{quote(intent.id)}/change/")
    add = client.get("/admin/payments/paymentintent/add/")
    rules = client.get("/admin/payments/declinerule/?action__exact=stop")

    assert gateways.status_code == 200 and b"closed (0 errors" in gateways.content
    assert health.status_code == 200 and b"<svg" in health.content and b"primary" in health.content
    assert payment.status_code == 200 and intent.id.encode() in payment.content
    assert (
        b"ChargeCaptured" in payment.content
        and b"Dr processor_clearing:primary 100.00 USD" in payment.content
    )
    assert b"rule &#x27;default&#x27; matched" in payment.content
    # Money in major units with its currency, the routing once in words (the raw JSON folded away).
    assert b'<div class="readonly">100.00 USD</div>' in payment.content
    page = payment.content.decode()
    assert (
        page.index("rule &#x27;default&#x27; matched")
        < page.index("<details><summary>")
        < page.index('field-routing"')
    )
    assert add.status_code == 403
    assert rules.status_code == 200 and b"lost_card" in rules.content


def test_amount_above_the_marketplace_limit_is_refused(mesh):
    from apps.tenants.db import tenant_connection

    tenant_connection().tenant.max_payment_amount = 50_000
    before = PaymentIntent.objects.count()
    with pytest.raises(PaymentError, match="above this marketplace's limit of 50000") as err:
        pay(amount=50_001)
    assert (err.value.param, err.value.code) == ("amount", "amount_too_large")
    assert PaymentIntent.objects.count() == before
    assert pay(amount=50_000).status == "succeeded"


def test_unknown_test_token_is_a_clear_error_and_nothing_is_charged(mesh):
    before = SimulatorCharge.objects.count()
    with pytest.raises(PaymentError, match="No such PaymentMethod: 'pm_card_nonsense'") as err:
        pay(pm="pm_card_nonsense")
    assert err.value.param == "payment_method"
    assert SimulatorCharge.objects.count() == before


def test_capture_of_a_failed_payment_is_refused(mesh):
    intent = pay(pm="pm_card_chargeDeclinedLostCard", capture_method="manual")
    with pytest.raises(PaymentError, match="is failed; only requires_capture"):
        payment_capture(intent_id=intent.id)


def test_resolution_while_the_gateway_is_down_stays_unknown_and_never_fails_over(mesh):
    from apps.payments.services import AttemptStillUnknown

    intent = pay(pm="pm_sim_timeout_after_charge")
    configure("primary", down=True)  # it took the charge, then stopped answering

    with pytest.raises(AttemptStillUnknown):
        payment_attempt_resolve(attempt_id=f"{intent.id}_1")

    intent.refresh_from_db()
    assert intent.status == "processing"
    assert list(intent.attempts.values_list("status", flat=True)) == ["unknown"]
    configure("primary")
    payment_attempt_resolve(attempt_id=f"{intent.id}_1")
    intent.refresh_from_db()
    assert intent.status == "succeeded"
    assert charges(intent) == 1


def test_each_confirmation_of_a_failing_payment_is_its_own_failure(mesh):
    from apps.ledger.models import LedgerEvent
    from apps.payments.services import payment_confirm
    from apps.webhooks.models import OutboundEvent

    configure("primary", down=True)
    configure("secondary", down=True)
    intent = pay()

    again = payment_confirm(intent_id=intent.id)
    third = payment_confirm(intent_id=intent.id)

    assert again.status == third.status == "failed"
    failures = LedgerEvent.objects.filter(stream=intent.id, type="PaymentFailed")
    assert failures.count() == 3  # one per confirmation, none taken for a repeat of another
    assert OutboundEvent.objects.filter(type="payment.failed", object_id=intent.id).count() == 3
