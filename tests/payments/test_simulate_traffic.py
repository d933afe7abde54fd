from __future__ import annotations

import json
import subprocess

import pytest
from django_tenants.utils import tenant_context

from apps.payments.models import GatewayAccount, PaymentIntent
from apps.tenants.models import Marketplace
from apps.tenants.scratch import scratch_drop
from tests.scratch_support import endpoint_add, footprint, scratch_exists, simulate
from tests.support import fresh_marketplace

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess:
    return simulate("simulate_traffic", *args)


def test_simulate_traffic_with_an_outage_saves_sales_and_never_charges_twice(committed):
    tenant = fresh_marketplace("st", simulator_latency_ms=1)
    slug = tenant.schema_name
    endpoint_add(tenant)
    before = footprint(tenant)

    result = run(
        "--tenant",
        slug,
        "--payments",
        "120",
        "--concurrency",
        "4",
        "--outage",
        "primary:0.5",
        "--seed",
        "7",
        "--json",
        "--keep",
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # it ran in a scratch marketplace configured like the named one, named at the start, and kept
    name = report["marketplace"]
    assert name.startswith("sim_traffic_") and scratch_exists(name)
    scratch = Marketplace.objects.get(schema_name=name)
    assert f"marketplace {name} (scratch, configured like {slug})" in result.stderr
    assert f"kept {name}: admin at http://sim-traffic-{name[-8:]}.localhost:8000/admin/" in result.stderr
    # the named marketplace is as it was: no payments, ledger events, events or deliveries, no
    # card_vault account, its gateway settings unchanged
    assert footprint(tenant) == before
    for key in (
        "payments",
        "succeeded",
        "failed",
        "declined",
        "failed_over",
        "unknown_resolved",
        "max_charges_per_intent",
        "ledger_verified",
        "p50_ms",
        "p99_ms",
    ):
        assert key in report
    assert report["payments"] == 120
    assert report["max_charges_per_intent"] == 1
    assert report["ledger_verified"] is True
    assert report["failed_over"] >= 1  # the outage started mid-run: some payments failed over
    assert report["by_gateway"]["secondary"] > 0
    assert report["unknown_resolved"] >= 1
    assert report["succeeded"] + report["failed"] + report["declined"] + report["requires_action"] == 120
    # the methods mix one-off tokens and cards saved at primary only, at both, and vaulted
    assert sum(report["methods"].values()) == 120
    assert all(report["methods"][k] > 0 for k in ("one_off", "primary_only", "both", "vaulted"))
    # with primary down, payments failed over directly, through the vault, or could not
    failovers = report["failovers"]
    assert failovers["direct"] > 0 and failovers["vault"] > 0 and failovers["impossible"] > 0
    try:
        _scratch_rows_match(scratch, failovers)
    finally:
        scratch_drop(scratch)
    assert not scratch_exists(name)


def _scratch_rows_match(scratch, failovers) -> None:
    with tenant_context(scratch):
        assert GatewayAccount.objects.get(name="primary").settings == {"latency_ms": {"p50": 1}}  # restored
        assert GatewayAccount.objects.get(name="card_vault").settings["vault"] is True
        # the counts are the rows': primary comes first, so every payment tried at secondary failed
        # over to it, through the vault when its routing says so; the impossible ones failed unreachable
        payments = PaymentIntent.objects.filter(metadata__simulation=7)
        at_secondary = payments.filter(attempts__gateway_account__name="secondary").distinct()
        vaulted = payments.filter(routing__has_key="via")
        unreachable = payments.filter(last_error__code="payment_method_unreachable")
        assert at_secondary.count() == failovers["direct"] + failovers["vault"]
        assert vaulted.count() == failovers["vault"]
        assert unreachable.count() == failovers["impossible"]
        # only a card vaulted reaches secondary through the vault; only one saved at primary alone
        # has nowhere else to go
        assert {p.metadata["method"] for p in vaulted} == {"vaulted"}
        assert {p.metadata["method"] for p in unreachable} == {"primary_only"}
        assert all(
            {"gateway": "secondary", "reason": "no credential and no vault route"} in p.routing["skipped"]
            for p in unreachable
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope", "--payments", "5"], "no marketplace 'nope'"),
        (["--tenant", "alpha", "--payments", "0"], "--payments must be at least 1"),
        (
            ["--tenant", "alpha", "--payments", "5", "--outage", "tertiary:0.5"],
            "--outage must be GATEWAY:FRACTION",
        ),
        (
            ["--tenant", "alpha", "--payments", "5", "--outage", "primary:2"],
            "--outage must be GATEWAY:FRACTION",
        ),
    ],
)
def test_simulate_traffic_bad_input_is_one_line_and_exit_1(db, args, message):
    result = run(*args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_more_threads_than_pooled_connections_take_turns(committed):
    # given a marketplace whose gateways take 300 ms, and a pool of two connections (one is the
    # command's own) that a thread waits at most 2 s for: a thread keeping its connection for its
    # whole run (12 x 300 ms) would starve the others
    tenant = fresh_marketplace("stpool", simulator_latency_ms=None)
    with tenant_context(tenant):
        GatewayAccount.objects.filter(kind="simulator").update(
            settings={"latency_ms": {"p50": 300, "p99": 300}}
        )
    before = footprint(tenant)

    # when three threads make twelve payments
    result = simulate(
        *("simulate_traffic", "--tenant", tenant.schema_name),
        *("--payments", "12", "--concurrency", "3", "--seed", "3", "--json"),
        debug=False,
        DATABASE_POOL_MAX_SIZE="2",
        DATABASE_POOL_TIMEOUT="2",
    )

    # then every payment was made
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["payments"] == 12
    assert report["max_charges_per_intent"] == 1
    # in a scratch marketplace (its gateways as slow as the named one's), dropped afterwards
    assert not scratch_exists(report["marketplace"])
    assert footprint(tenant) == before


def test_simulate_traffic_names_its_scratch_marketplace_and_drops_it(committed):
    # given a marketplace with a webhook endpoint
    tenant = fresh_marketplace("sttext", simulator_latency_ms=0)
    endpoint_add(tenant)
    before = footprint(tenant)

    # when a short run prints its report as text
    result = run("--tenant", tenant.schema_name, "--payments", "4", "--concurrency", "1", "--seed", "2")

    # then it names the scratch marketplace first and in the report, and that marketplace is gone
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert (
        lines[0].startswith("marketplace sim_traffic_")
        and f"configured like {tenant.schema_name}" in lines[0]
    )
    name = lines[0].split()[1]
    assert f"marketplace              {name}" in lines
    assert "kept" not in result.stdout + result.stderr
    assert not scratch_exists(name)
    assert footprint(tenant) == before
