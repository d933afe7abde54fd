"""The demonstration command, in a process of its own against a fresh committed marketplace."""

from __future__ import annotations

import json
import subprocess
import sys

from django.conf import settings
from django_tenants.utils import tenant_context

from apps.billing.models import Invoice
from apps.payments.models import GatewayAccount, PaymentIntent, RoutingRule
from tests.support import BASE, database_url_for_tests, fresh_marketplace


def test_simulate_subscriptions_prints_the_contract_and_restores_the_gateways(committed):
    tenant = fresh_marketplace("ss", simulator_latency_ms=None)
    slug = tenant.schema_name
    with tenant_context(tenant):
        before = (
            sorted(GatewayAccount.objects.values_list("name", "settings")),
            list(RoutingRule.objects.values_list("candidates", flat=True)),
        )
    env = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "PATH": "/usr/bin:/bin",
        "DJANGO_DEBUG": "1",
    }
    args = ["--tenant", slug, "--customers", "20", "--months", "2", "--seed", "5", "--json"]
    done = subprocess.run(
        [sys.executable, "manage.py", "simulate_subscriptions", *args],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    with tenant_context(tenant):
        after = (
            sorted(GatewayAccount.objects.exclude(name="card_vault").values_list("name", "settings")),
            list(RoutingRule.objects.values_list("candidates", flat=True)),
        )
        # the vault account the vaulted cards are held at stays (their credential is there)
        assert GatewayAccount.objects.get(name="card_vault").settings["vault"] is True
    assert after == before


def test_simulate_subscriptions_counts_failovers_and_recoveries_by_route_from_the_rows(committed):
    # given a marketplace, and customers whose cards are one-off tokens or saved at primary only, at
    # both gateways, or at primary and the card vault (secondary reachable only through it)
    tenant = fresh_marketplace("ssr", simulator_latency_ms=None)
    env = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "PATH": "/usr/bin:/bin",
        "DJANGO_DEBUG": "1",
    }
    args = ["--tenant", tenant.schema_name, "--customers", "20", "--months", "2", "--seed", "5", "--json"]

    # when two months of renewals run, primary declining foreign cards and some others
    done = subprocess.run(
        [sys.executable, "manage.py", "simulate_subscriptions", *args],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    # then charges declined at primary moved to secondary directly, through the vault, or could not
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sum(report["methods"].values()) == 20
    failovers, recoveries = report["failovers"], report["recoveries"]
    assert failovers["direct"] > 0 and failovers["vault"] > 0 and failovers["impossible"] > 0
    assert recoveries["direct"] + recoveries["vault"] + recoveries["same_gateway"] == report["recovered"]
    assert recoveries["vault"] > 0 and recoveries["impossible"] > 0
    assert recoveries["impossible"] <= report["failed_first_try"] - report["recovered"]
    # and the counts are what the rows say (each invoice's payment, in its latest round)
    with tenant_context(tenant):
        payments = PaymentIntent.objects.filter(
            pk__in=Invoice.objects.filter(
                subscription__customer__name__startswith=f"sim-{report['run']}-cross"
            ).values("payment_id")
        )
        assert payments.filter(routing__has_key="via").count() == failovers["vault"]
        assert (
            payments.filter(last_error__code="payment_method_unreachable").count() == failovers["impossible"]
        )
