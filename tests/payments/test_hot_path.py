"""The mesh's hot path: the configuration cache, the hand-built statements, the breakers read in
one round trip, and what one payment costs (ARCHITECTURE section 6)."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from apps.payments import config as mesh_cache
from apps.payments import declines, hotpath, locks
from apps.payments.breaker import CircuitBreaker
from apps.payments.config import mesh_config, mesh_config_changed
from apps.payments.gateways.base import Outcome
from apps.payments.models import DeclineRule, GatewayAccount, PaymentAttempt, PaymentIntent, RoutingRule
from apps.payments.services import payment_intent_create
from apps.tenants.db import tenant_connection
from apps.tenants.services import marketplace_create
from tests.payments.conftest import configure
from tests.support import redis_client


def pay(**kw) -> PaymentIntent:
    return payment_intent_create(
        amount=1000, currency="usd", payment_method="pm_card_visa", confirm=True, **kw
    )


@pytest.fixture(scope="module")
def market(django_db_setup, django_db_blocker):
    """A marketplace of its own with committed data (the cache is only used outside transactions)."""
    slug = "hp" + uuid.uuid4().hex[:10]
    with django_db_blocker.unblock():
        tenant = marketplace_create(
            slug=slug, name=slug, domain=f"{slug}.localhost", owner_email="o@h.test"
        ).marketplace
        tenant_connection().set_schema_to_public()
    return tenant


@pytest.fixture
def committed_market(committed, market):
    with tenant_context(market):
        for account in GatewayAccount.objects.filter(kind="simulator"):
            account.settings, account.enabled = {"latency_ms": {"p50": 0}}, True
            account.save()
            CircuitBreaker(account.name).reset()
        yield market
        for name in ("primary", "secondary"):
            CircuitBreaker(name).reset()


# --------------------------------------------------------------------------- configuration cache


def test_an_edit_saved_here_applies_to_the_next_payment(committed_market):
    assert pay().gateway_account.name == "primary"
    first = mesh_config()
    assert mesh_config() is first  # cached

    account = GatewayAccount.objects.get(name="primary")
    account.enabled = False
    account.save()

    assert mesh_config() is not first
    assert pay().gateway_account.name == "secondary"


def test_an_edit_in_another_process_applies_within_the_check_interval(committed_market, monkeypatch):
    monkeypatch.setattr(mesh_cache, "CHECK_SECONDS", 3600.0)
    pay()
    cached = mesh_config()
    # Another process disabled primary: its rows changed and its commit bumped the version.
    GatewayAccount.objects.filter(name="primary").update(enabled=False)
    redis_client().incr(f"mp:cfg:{committed_market.schema_name}")
    assert mesh_config() is cached  # not looked at again yet

    monkeypatch.setattr(mesh_cache, "CHECK_SECONDS", 0.0)
    assert mesh_config() is not cached
    assert pay().gateway_account.name == "secondary"


def test_a_change_without_signals_applies_after_the_maximum_age(committed_market, monkeypatch):
    pay()
    cached = mesh_config()
    GatewayAccount.objects.filter(name="primary").update(enabled=False)  # no signal, no version bump
    monkeypatch.setattr(mesh_cache, "CHECK_SECONDS", 0.0)
    assert mesh_config() is cached  # the version did not move

    monkeypatch.setattr(mesh_cache, "MAX_AGE_SECONDS", 0.0)
    assert pay().gateway_account.name == "secondary"


def test_routing_and_decline_rules_are_cached_and_reloaded_on_change(committed_market):
    pay()
    rule = RoutingRule.objects.create(
        name="euro first to secondary",
        priority=1,
        currencies=["EUR"],
        candidates=[{"gateway": "secondary"}],
    )
    try:
        intent = payment_intent_create(
            amount=1000, currency="eur", payment_method="pm_card_visa", confirm=True
        )
        assert intent.routing["decision"]["rule"] == "euro first to secondary"
        assert intent.gateway_account.name == "secondary"

        DeclineRule.objects.filter(code="transaction_not_allowed").update(action="stop")
        mesh_config_changed()  # what a change made without the ORM's signals has to call
        configure("primary", allowed_card_countries=["US"])
        declined = payment_intent_create(
            amount=1000, currency="usd", payment_method="pm_card_br", confirm=True
        )
        assert declined.status == "failed" and declined.last_error["action"] == "stop"
    finally:
        rule.delete()
        DeclineRule.objects.filter(code="transaction_not_allowed").update(action="failover")
        mesh_config_changed()


def test_inside_a_transaction_the_rows_are_read_as_they_are(committed_market):
    pay()
    with transaction.atomic():
        GatewayAccount.objects.filter(name="primary").update(enabled=False)  # uncommitted
        assert mesh_config().accounts["primary"].enabled is False
        transaction.set_rollback(True)
    assert mesh_config().accounts["primary"].enabled is True  # the cache never saw it


@pytest.mark.parametrize(
    ("kind", "outcome", "code", "advice"),
    [
        ("simulator", Outcome.DECLINED_SOFT, "generic_decline", ""),
        ("simulator", Outcome.DECLINED_SOFT, "insufficient_funds", "try_again_later"),
        ("stripe", Outcome.DECLINED_HARD, "lost_card", ""),
        ("adyen", Outcome.DECLINED_SOFT, "never_heard_of_it", ""),
        ("adyen", Outcome.DECLINED_HARD, "never_heard_of_it", "confirm_card_data"),
        ("simulator", Outcome.DECLINED_SOFT, "transaction_not_allowed", "confirm_card_data"),
    ],
)
def test_the_cached_decline_table_decides_as_the_database_does(in_tenant_a, kind, outcome, code, advice):
    DeclineRule.objects.create(
        gateway_kind="adyen", code="*", advice_code="confirm_card_data", action="failover"
    )
    args = {"gateway_kind": kind, "outcome": outcome, "decline_code": code, "advice_code": advice}
    assert declines.decline_action(**args, table=mesh_config().decline_rules) == declines.decline_action(
        **args
    )


# --------------------------------------------------------------------------- statements and round trips


def test_lock_attempt_reads_what_the_orm_reads(mesh):
    intent = pay(metadata={"order": "A-1", "nested": {"n": [1, 2]}}, description="two shirts")
    attempt_id = f"{intent.id}_1"

    fast = locks.lock_attempt(attempt_id)
    orm = PaymentAttempt.objects.select_related("intent").get(pk=attempt_id)

    for field in PaymentAttempt._meta.concrete_fields:
        assert getattr(fast, field.attname) == getattr(orm, field.attname), field.name
    for field in PaymentIntent._meta.concrete_fields:
        assert getattr(fast.intent, field.attname) == getattr(orm.intent, field.attname), field.name
    assert not fast._state.adding and not fast.intent._state.adding
    with pytest.raises(PaymentAttempt.DoesNotExist):
        locks.lock_attempt("pay_nope_1")


def test_write_goes_through_save_when_a_receiver_listens(mesh):
    seen: list[tuple[str, bool]] = []

    def receiver(sender, instance, created, **kwargs):
        seen.append((instance.pk, created))

    post_save.connect(receiver, sender=PaymentIntent)
    try:
        intent = pay()
    finally:
        post_save.disconnect(receiver, sender=PaymentIntent)

    assert (intent.id, True) in seen  # created
    assert (intent.id, False) in seen  # its outcome saved


def test_write_refuses_an_update_of_a_missing_row(mesh):
    ghost = PaymentIntent(id="pay_ghost", amount=1, currency="USD", payment_method="pm_card_visa")
    with pytest.raises(Exception, match="rows to update"):
        hotpath.write(update=[(ghost, ["status", "updated_at"])])


def test_allow_many_answers_as_allow_does(mesh, settings):
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "consecutive_failures": 1, "cooldown_seconds": 60}
    CircuitBreaker("secondary").record(success=False)  # open

    assert CircuitBreaker.allow_many(["primary", "secondary", "ghost"]) == {
        "primary": True,
        "secondary": False,
        "ghost": True,
    }
    settings.CIRCUIT_BREAKER = {**settings.CIRCUIT_BREAKER, "cooldown_seconds": 0}
    assert CircuitBreaker.allow_many(["secondary"]) == {"secondary": True}  # the one probe
    assert CircuitBreaker.allow_many(["secondary"]) == {"secondary": False}  # nobody else meanwhile


def test_a_payment_is_two_transactions_around_the_gateway_call(committed_market):
    pay()  # warm the configuration cache
    with CaptureQueriesContext(connection) as queries:
        intent = pay()

    assert intent.status == "succeeded"
    sql = [str(q["sql"]) for q in queries.captured_queries]
    # Ours: created + first attempt (one write, two events), then the outcome (lock, one write, the
    # capture's posting, and the payment.succeeded event for webhooks: the endpoints, the payment's
    # snapshot (payment, attempts), one insert): 14; the simulator's own charge is in between (its
    # lookup, then a transaction: the attempt's lock, the cancellation check, the insert): 6.
    assert sum(1 for s in sql if s == "COMMIT") == 3
    assert len(sql) <= 20, sql


def test_the_prepared_statements_write_to_the_current_schema(mesh, tenant_b):
    here = pay()
    with tenant_context(tenant_b):
        there = pay()
        assert there.status == "succeeded"
        assert PaymentIntent.objects.filter(pk=there.id).exists()
        assert not PaymentIntent.objects.filter(pk=here.id).exists()
        assert PaymentAttempt.objects.get(pk=f"{there.id}_1").status == "captured"
    assert not PaymentIntent.objects.filter(pk=there.id).exists()
    assert PaymentAttempt.objects.get(pk=f"{here.id}_1").status == "captured"


def test_no_transaction_is_open_during_the_gateway_call(committed_market, monkeypatch):
    from apps.payments.gateways.simulator import SimulatorGateway

    seen: list[bool] = []
    authorize = SimulatorGateway.authorize

    def watched(self, request):
        seen.append(connection.in_atomic_block)
        return authorize(self, request)

    monkeypatch.setattr(SimulatorGateway, "authorize", watched)
    configure("primary", down=True)  # an attempt, a failover, another attempt

    intent = pay()

    assert intent.status == "succeeded" and intent.gateway_account.name == "secondary"
    assert seen == [False, False]
    assert PaymentAttempt.objects.get(pk=f"{intent.id}_1").latency_ms is not None
