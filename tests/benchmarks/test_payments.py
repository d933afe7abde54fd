"""The payment mesh's cost, each figure beside its same-run baseline (simulator at 0 ms latency).

1. Mesh overhead: ``payment_intent_create(confirm=True)`` minus a direct ``SimulatorGateway.authorize``
   (the same gateway work alone), p50 and p99, one process, the two calls interleaved so both see the
   same machine. Targets: 3 ms (p50) and 10 ms (p99).
2. Failover once a breaker is open: payments whose rule lists a failing gateway (breaker open, so it
   is skipped without a call) first, against payments whose rule lists only the healthy gateway, both
   landing on the same gateway, interleaved. Target: under 1 ms added.
3. Payments per second with PAYMENTS_BENCH_CLIENTS (default 16) client processes through the same
   service path, against the same clients calling the simulator directly.

PAYMENTS_BENCH_N (default 500) is the number of payments per series in 1 and 2;
PAYMENTS_BENCH_SECONDS (default 5) the length of each phase of 3. Figures are printed, never
asserted; correctness (every payment succeeded, one charge each, the skipped gateway never called)
is asserted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from django_tenants.utils import tenant_context

from apps.payments.breaker import CircuitBreaker
from apps.payments.gateways.base import ChargeRequest, GatewayConfig
from apps.payments.gateways.simulator import SimulatorGateway
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent, RoutingRule, SimulatorCharge
from apps.payments.services import payment_intent_create
from apps.tenants.services import marketplace_create
from tests.benchmarks.payment_workers import client_main
from tests.benchmarks.pool import ProcessPool, percentile
from tests.support import database_url_for_tests

pytestmark = pytest.mark.bench

N = int(os.environ.get("PAYMENTS_BENCH_N", "500"))
WARMUP = 30
CLIENTS = int(os.environ.get("PAYMENTS_BENCH_CLIENTS", "16"))
SECONDS = float(os.environ.get("PAYMENTS_BENCH_SECONDS", "5"))
ZERO = {"latency_ms": {"p50": 0}}


# --------------------------------------------------------------------------- helpers


def _marketplace():
    slug = "bpay_" + uuid.uuid4().hex[:10]
    market = marketplace_create(
        slug=slug, name=slug, domain=f"{slug.replace('_', '-')}.localhost", owner_email="o@b.test"
    ).marketplace
    with tenant_context(market):
        for account in GatewayAccount.objects.filter(kind="simulator"):
            account.settings = dict(ZERO)
            account.save()  # through save(): the mesh's configuration cache hears of it
            CircuitBreaker(account.name).reset()
    return market


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:6.2f} ms"


def _dist(values: list[float]) -> str:
    return f"p50 {_ms(percentile(values, 0.5))}  p99 {_ms(percentile(values, 0.99))}  (n={len(values)})"


def _pay(amount: int = 1000) -> Callable[[], None]:
    def one() -> None:
        intent = payment_intent_create(
            amount=amount, currency="usd", payment_method="pm_card_visa", confirm=True
        )
        assert intent.status == "succeeded", (intent.status, intent.last_error)

    return one


def _direct() -> Callable[[], None]:
    gateway = SimulatorGateway(GatewayConfig(account_id="primary", settings=dict(ZERO)))

    def one() -> None:
        result = gateway.authorize(
            ChargeRequest(
                attempt_id="bench_" + uuid.uuid4().hex,
                amount=1000,
                currency="USD",
                payment_method="pm_card_visa",
            )
        )
        assert result.outcome == "succeeded", result

    return one


def _interleaved(a: Callable[[], None], b: Callable[[], None], n: int) -> tuple[list[float], list[float]]:
    """Time ``n`` calls of each, alternating which goes first, so both see the same machine."""
    ta: list[float] = []
    tb: list[float] = []
    for i in range(n):
        for fn, out in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return ta, tb


class _RedisTrips:
    """Counts round trips to Redis (a pipeline or a command is one send)."""

    def __enter__(self):
        self.count = 0
        self._orig = redis.connection.AbstractConnection.send_packed_command
        counter = self

        def send(conn, command, check_health=True):
            counter.count += 1
            return counter._orig(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc):
        redis.connection.AbstractConnection.send_packed_command = self._orig  # type: ignore[method-assign]


def _per_payment_costs(fn: Callable[[], None]) -> str:
    with CaptureQueriesContext(connection) as queries, _RedisTrips() as trips:
        fn()
    commits = sum(1 for q in queries.captured_queries if (q["sql"] or "").strip().upper() == "COMMIT")
    return (
        f"{len(queries.captured_queries)} SQL statements ({commits} commits), {trips.count} Redis round trips"
    )


# --------------------------------------------------------------------------- 1. mesh overhead


def test_mesh_overhead_against_a_direct_simulator_call(committed, bench_report):
    market = _marketplace()
    with tenant_context(market):
        mesh, direct = _pay(), _direct()
        _interleaved(mesh, direct, WARMUP)
        costs = _per_payment_costs(mesh)
        t_mesh, t_direct = _interleaved(mesh, direct, N)
        assert PaymentIntent.objects.exclude(status="succeeded").count() == 0

    p50 = percentile(t_mesh, 0.5) - percentile(t_direct, 0.5)
    p99 = percentile(t_mesh, 0.99) - percentile(t_direct, 0.99)
    bench_report(
        f"payment mesh overhead, one process, simulator at 0 ms, N={N} interleaved",
        [
            ("baseline: SimulatorGateway.authorize alone", _dist(t_direct)),
            ("payment_intent_create(confirm=True)", _dist(t_mesh)),
            ("mesh overhead p50 (mesh - baseline)", f"{_ms(p50)}  (target 3 ms)"),
            ("mesh overhead p99 (mesh - baseline)", f"{_ms(p99)}  (target 10 ms)"),
            ("one payment through the mesh costs", costs),
        ],
    )


# --------------------------------------------------------------------------- 2. failover, breaker open


def test_failover_cost_once_the_breaker_is_open(committed, bench_report):
    market = _marketplace()
    cooldown = {**settings.CIRCUIT_BREAKER, "cooldown_seconds": 3600}  # stays open for the whole run
    with tenant_context(market), override_settings(CIRCUIT_BREAKER=cooldown):
        GatewayAccount.objects.create(name="tertiary", kind="simulator", settings={**ZERO, "down": True})
        RoutingRule.objects.all().delete()
        # Same conditions checked for both; only the candidate lists differ.
        RoutingRule.objects.create(
            name="healthy", priority=1, amount_max=1000, candidates=[{"gateway": "secondary"}]
        )
        RoutingRule.objects.create(
            name="failing first",
            priority=2,
            amount_min=1001,
            candidates=[{"gateway": "tertiary"}, {"gateway": "secondary"}],
        )
        breaker = CircuitBreaker("tertiary")
        breaker.reset()
        for _ in range(int(settings.CIRCUIT_BREAKER["consecutive_failures"])):
            breaker.record(success=False)
        assert breaker.state().state == "open"

        healthy, failing = _pay(1000), _pay(2000)
        _interleaved(healthy, failing, WARMUP)
        t_healthy, t_failing = _interleaved(healthy, failing, N)

        # The failing gateway was skipped (never called), and every payment landed on secondary.
        assert not PaymentAttempt.objects.filter(gateway_account__name="tertiary").exists()
        assert PaymentIntent.objects.exclude(status="succeeded").count() == 0
        sample = PaymentIntent.objects.filter(amount=2000).first()
        assert sample is not None and sample.routing["decision"]["skipped"] == {"tertiary": "circuit open"}
        breaker.reset()

    p50 = percentile(t_failing, 0.5) - percentile(t_healthy, 0.5)
    p99 = percentile(t_failing, 0.99) - percentile(t_healthy, 0.99)
    bench_report(
        f"failover once the breaker is open, one process, simulator at 0 ms, N={N} interleaved",
        [
            ("baseline: rule [secondary], no failing gateway", _dist(t_healthy)),
            ("rule [tertiary (down, breaker open), secondary]", _dist(t_failing)),
            ("added by the skipped gateway, p50", f"{_ms(p50)}  (target < 1 ms)"),
            ("added by the skipped gateway, p99", _ms(p99)),
        ],
    )


# --------------------------------------------------------------------------- 3. throughput


def test_payments_per_second_with_concurrent_clients(committed, bench_report):
    market = _marketplace()
    clients = ProcessPool(client_main, (database_url_for_tests(), market.schema_name), CLIENTS, "client")
    try:
        direct = clients.run({"mode": "direct"}, n=CLIENTS, seconds=SECONDS)
        mesh = clients.run({"mode": "mesh"}, n=CLIENTS, seconds=SECONDS)
    finally:
        clients.close()

    def line(r: dict, unit: str) -> str:
        return f"{r['rate']:7.1f} {unit}/s  (p50 {_ms(percentile(r['lat'], 0.5))}, p99 {_ms(percentile(r['lat'], 0.99))})"

    rows = [
        ("baseline: SimulatorGateway.authorize alone", line(direct, "authorizations")),
        ("payment_intent_create(confirm=True)", line(mesh, "payments")),
        ("mesh / baseline", f"{mesh['rate'] / direct['rate']:.0%}" if direct["rate"] else "n/a"),
    ]
    for name, r in (("baseline", direct), ("mesh", mesh)):
        if r["errors"]:
            rows.append((f"{name} errors", str(r["errors"])))
    bench_report(
        f"payments per second, {CLIENTS} client processes, simulator at 0 ms, {SECONDS:g} s each", rows
    )

    assert not mesh["errors"] and not direct["errors"], (mesh["errors"], direct["errors"])
    with tenant_context(market):
        warmups = CLIENTS * 5
        assert PaymentIntent.objects.filter(status="succeeded").count() == mesh["count"] + warmups
        assert PaymentIntent.objects.exclude(status="succeeded").count() == 0
        # Never charged twice: one attempt and one simulator charge per payment.
        paid = mesh["count"] + warmups
        assert PaymentAttempt.objects.count() == paid
        assert SimulatorCharge.objects.filter(attempt_id__startswith="pay_").count() == paid
