"""The demonstration command, in a process of its own, configured like a fresh committed
marketplace (it runs in a scratch marketplace of its own)."""

from __future__ import annotations

import json

from django_tenants.utils import tenant_context

from apps.billing.models import Invoice
from apps.payments.models import PaymentIntent
from apps.tenants.models import Marketplace
from apps.tenants.scratch import scratch_drop
from tests.scratch_support import endpoint_add, footprint, scratch_exists, simulate
from tests.support import fresh_marketplace


def test_simulate_subscriptions_prints_the_contract_and_leaves_the_named_marketplace_alone(committed):
    tenant = fresh_marketplace("ss", simulator_latency_ms=None)
    slug = tenant.schema_name
    endpoint_add(tenant)
    before = footprint(tenant)
    args = ["--tenant", slug, "--customers", "20", "--months", "2", "--seed", "5", "--json"]
    done = simulate("simulate_subscriptions", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key in (
        "invoices",
        "failed_first_try",
        "recovered",
        "recovery_rate",
        "cross_gateway_recovered",
        "double_charged_periods",
        "open_invoices",
        "ledger_verified",
    ):
        assert key in report, key
    assert report["invoices"] >= 20
    assert report["double_charged_periods"] == 0
    assert report["ledger_verified"] is True
    assert "cross-gateway: day" in done.stderr
    # it ran in a scratch marketplace, named at the start and in the report, dropped afterwards;
    # the named one has no new payments, invoices, ledger events, events or deliveries, no
    # card_vault account, and its gateway settings and routing as they were
    name = report["marketplace"]
    assert name.startswith("sim_subscriptions_")
    assert f"marketplace {name} (scratch, configured like {slug})" in done.stderr
    assert not scratch_exists(name)
    assert footprint(tenant) == before


def test_simulate_subscriptions_counts_failovers_and_recoveries_by_route_from_the_rows(committed):
    # given a marketplace, and customers whose cards are one-off tokens or saved at primary only, at
    # both gateways, or at primary and the card vault (secondary reachable only through it)
    tenant = fresh_marketplace("ssr", simulator_latency_ms=None)
    args = [
        "--tenant",
        tenant.schema_name,
        "--customers",
        "20",
        "--months",
        "2",
        "--seed",
        "5",
        "--json",
        "--keep",
    ]

    # when two months of renewals run, primary declining foreign cards and some others
    done = simulate("simulate_subscriptions", *args)

    # then charges declined at primary moved to secondary directly, through the vault, or could not
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sum(report["methods"].values()) == 20
    failovers, recoveries = report["failovers"], report["recoveries"]
    assert failovers["direct"] > 0 and failovers["vault"] > 0 and failovers["impossible"] > 0
    assert recoveries["direct"] + recoveries["vault"] + recoveries["same_gateway"] == report["recovered"]
    assert recoveries["vault"] > 0 and recoveries["impossible"] > 0
    assert recoveries["impossible"] <= report["failed_first_try"] - report["recovered"]
    # and the counts are what the rows say (each invoice's payment, in its latest round), in the
    # scratch marketplace the run kept
    scratch = Marketplace.objects.get(schema_name=report["marketplace"])
    try:
        _rows_match(scratch, report, failovers)
    finally:
        scratch_drop(scratch)
    assert not scratch_exists(report["marketplace"])


def _rows_match(scratch, report, failovers) -> None:
    with tenant_context(scratch):
        payments = PaymentIntent.objects.filter(
            pk__in=Invoice.objects.filter(
                subscription__customer__name__startswith=f"sim-{report['run']}-cross"
            ).values("payment_id")
        )
        assert payments.filter(routing__has_key="via").count() == failovers["vault"]
        assert (
            payments.filter(last_error__code="payment_method_unreachable").count() == failovers["impossible"]
        )
