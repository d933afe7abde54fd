"""The demonstration command, in a process of its own against a fresh committed marketplace."""

from __future__ import annotations

import json
import subprocess
import sys

from django.conf import settings
from django_tenants.utils import tenant_context

from apps.payments.models import GatewayAccount, RoutingRule
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
    args = ["--tenant", slug, "--customers", "12", "--months", "2", "--seed", "3", "--json"]
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
    assert report["invoices"] >= 12
    assert report["double_charged_periods"] == 0
    assert report["ledger_verified"] is True
    assert "cross-gateway: day" in done.stderr
    with tenant_context(tenant):
        after = (
            sorted(GatewayAccount.objects.values_list("name", "settings")),
            list(RoutingRule.objects.values_list("candidates", flat=True)),
        )
    assert after == before
