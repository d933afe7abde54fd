"""The mesh's own overhead and its failover time, with the simulator at zero latency."""

from __future__ import annotations

import statistics
import time
import uuid

import pytest
from django_tenants.utils import tenant_context

from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount
from apps.payments.services import payment_intent_create
from apps.tenants.services import marketplace_create

pytestmark = pytest.mark.bench
N = 300


def _run(n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        intent = payment_intent_create(
            amount=1000, currency="usd", payment_method="pm_card_visa", confirm=True
        )
        times.append(time.perf_counter() - t0)
        assert intent.status == "succeeded"
    return times


def _fmt(times: list[float]) -> str:
    q = statistics.quantiles(times, n=100)
    return (
        f"{len(times) / sum(times):7.1f} payments/s  p50 {q[49] * 1000:6.2f} ms  p99 {q[98] * 1000:6.2f} ms"
    )


def test_payment_and_failover_latency(committed, bench_report):
    slug = "bp" + uuid.uuid4().hex[:8]
    tenant = marketplace_create(
        slug=slug, name=slug, domain=f"{slug}.localhost", owner_email="o@b.test"
    ).marketplace
    with tenant_context(tenant):
        GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
        for name in ("primary", "secondary"):
            CircuitBreaker(name).reset()
        _run(20)  # warm-up
        direct = _run(N)
        GatewayAccount.objects.filter(name="primary").update(settings={"down": True})
        # Breaker thresholds high enough that every payment really tries primary first.
        from django.conf import settings

        saved = settings.CIRCUIT_BREAKER
        settings.CIRCUIT_BREAKER = {**saved, "consecutive_failures": 10**9, "min_requests": 10**9}
        failover = _run(N)
        settings.CIRCUIT_BREAKER = {**saved, "consecutive_failures": 5}
        CircuitBreaker("primary").reset()
        skipped = _run(N)  # after 5 failures the breaker opens: primary is skipped without a call
        settings.CIRCUIT_BREAKER = saved
    extra = statistics.median(failover) - statistics.median(direct)
    bench_report(
        "payment mesh, in-process, simulator at 0 ms (one process)",
        [
            ("baseline: first gateway succeeds", _fmt(direct)),
            ("failover: first gateway errors, second succeeds", _fmt(failover)),
            ("failover cost (median difference)", f"{extra * 1000:.2f} ms"),
            ("breaker open: failing gateway skipped", _fmt(skipped)),
        ],
    )
