"""The REST API's payment throughput over real HTTP, beside a same-run baseline on the same server.

A real gunicorn serves ``config.wsgi`` against the test database and Redis on 127.0.0.1, with DEBUG
off and run as docker/Dockerfile runs it (4 sync workers, access log on). A fresh marketplace
(simulator gateways at 0 ms latency) and one test-mode API key; every request carries the
marketplace's host and ``Authorization: Bearer``. Closed-loop clients (each sends its next request
when the previous answer arrives), one ``http.client`` connection each (kept alive where the server
allows it; sync workers close it after every answer, so those clients reconnect), spread as threads
over API_BENCH_PROCESSES (default 4) spawned processes, run four phases:

- baseline: ``GET /api/v1/account``, the trivial authenticated DRF endpoint (host -> schema, key
  lookup, the Redis rate-limit bucket, one small query), at 16 and 64 clients;
- subject: ``POST /api/v1/payments`` ``{"amount": 1000, "currency": "usd", "payment_method":
  "pm_card_visa", "confirm": true}`` with a unique ``Idempotency-Key`` each (create and confirm in
  one call: idempotency claim, routing, the attempt at the simulator, the ledger postings), at 16
  and 64 clients.

For each: requests/s, p50 and p99 latency, errors, and the server's CPU time per request (its
processes only, not PostgreSQL's or Redis's: steadier than the rates when the machine is shared);
then the subject as a share of the baseline. At each client count both endpoints are warmed up
first, then baseline and subject alternate in API_BENCH_ROUNDS (default 2) slices (A B B A ...), so
that whatever else the machine does falls on both alike; a phase's figures are its slices together.
The server's rate limit (``API_RATE_LIMIT_PER_SECOND`` / ``_BURST``) is raised so that no request is
throttled; the bucket is still taken on every request, as in production.

API_BENCH_SECONDS (default 5) is the measured length of each phase (all its slices together),
API_BENCH_WARMUP_SECONDS (default 1) that of each warm-up, API_BENCH_MAX_REQUESTS (default 20000)
caps the requests of one phase; API_BENCH_WORKERS (default 4) and API_BENCH_THREADS (default 1;
more selects gthread workers) shape the server. Figures are printed, never asserted; correctness
is asserted: every answer 200 or 201, every payment succeeded, and one PaymentIntent (with one
attempt, one simulator charge and one completed idempotency record) per 201.
"""

from __future__ import annotations

import os
import secrets
import uuid

import gunicorn
import pytest
from django.conf import settings
from django_tenants.utils import tenant_context

from apps.api.models import IdempotencyRecord
from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount, PaymentAttempt, PaymentIntent, SimulatorCharge
from apps.tenants.services import api_key_create, marketplace_create
from tests.benchmarks.api_clients import ACCOUNT_PATH, PAYMENTS_PATH, GunicornServer, client_main
from tests.benchmarks.pool import ProcessPool, percentile
from tests.support import database_url_for_tests

pytestmark = pytest.mark.bench

CLIENT_COUNTS = (16, 64)
SECONDS = float(os.environ.get("API_BENCH_SECONDS", "5"))
WARMUP_SECONDS = float(os.environ.get("API_BENCH_WARMUP_SECONDS", "1"))
MAX_REQUESTS = int(os.environ.get("API_BENCH_MAX_REQUESTS", "20000"))
PROCESSES = int(os.environ.get("API_BENCH_PROCESSES", "4"))
WORKERS = int(os.environ.get("API_BENCH_WORKERS", "4"))
THREADS = int(os.environ.get("API_BENCH_THREADS", "1"))
ROUNDS = max(1, int(os.environ.get("API_BENCH_ROUNDS", "2")))
MODES = ("account", "payments")
UNLIMITED = "1000000"  # the rate limit for the server: never reached


def _marketplace():
    slug = "bapi_" + uuid.uuid4().hex[:10]
    market = marketplace_create(
        slug=slug, name=slug, domain=f"{slug.replace('_', '-')}.localhost", owner_email="o@b.test"
    ).marketplace
    with tenant_context(market):
        for account in GatewayAccount.objects.filter(kind="simulator"):
            account.settings = {"latency_ms": {"p50": 0}}
            account.save()  # through save(): the mesh's configuration cache hears of it
            CircuitBreaker(account.name).reset()
    return market


def _server_env(domain: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_DEBUG": "0",
        # The same key as this process: anything it encrypted, the server can read.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY or "bench-only-" + secrets.token_hex(16),
        "DJANGO_ALLOWED_HOSTS": f"{domain},127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain http on the loopback, no TLS proxy in front
        "API_RATE_LIMIT_PER_SECOND": UNLIMITED,
        "API_RATE_LIMIT_BURST": UNLIMITED,
        "PYTHONUNBUFFERED": "1",
    }
    if settings.FIELD_ENCRYPTION_KEYS:
        env["FIELD_ENCRYPTION_KEYS"] = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    env.pop("WEB_CONCURRENCY", None)
    return env


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f} ms"


def _line(r: dict) -> str:
    errors = sum(r["errors"].values())
    cpu = _ms(r["cpu"] / r["count"]).strip() if r["count"] else "n/a"
    return (
        f"{r['rate']:7.1f} req/s, p50 {_ms(percentile(r['lat'], 0.5))}, "
        f"p99 {_ms(percentile(r['lat'], 0.99))}  (n={r['count']}, errors {errors}, "
        f"server CPU {cpu}/request)"
    )


def _merge(slices: list[dict]) -> dict:
    """One phase's slices as one: requests over the summed elapsed time, all latencies, all errors."""
    count = sum(r["count"] for r in slices)
    elapsed = sum(r["count"] / r["rate"] for r in slices if r["rate"])
    errors: dict[str, int] = {}
    for r in slices:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    lat = [x for r in slices for x in r["lat"]]
    rate = count / elapsed if elapsed else 0.0
    return {"count": count, "rate": rate, "lat": lat, "errors": errors, "cpu": sum(r["cpu"] for r in slices)}


def _created(r: dict) -> int:
    """Answers that were a 201 (the right ones, and any 201 whose payment did not succeed)."""
    return r["count"] + sum(v for k, v in r["errors"].items() if k.startswith("201 "))


def test_api_create_and_confirm_per_second_beside_an_authenticated_noop(committed, bench_report):
    load_before = os.getloadavg()[0]  # what else the machine was doing as we started
    market = _marketplace()
    domain = f"{market.schema_name.replace('_', '-')}.localhost"
    _, raw_key = api_key_create(tenant=market, name="api benchmark")

    server = GunicornServer(env=_server_env(domain), workers=WORKERS, threads=THREADS)
    clients: ProcessPool | None = None
    results: dict[tuple[str, int], dict] = {}
    warmups: list[tuple[str, dict]] = []
    try:
        server.wait_ready()
        pool = clients = ProcessPool(
            client_main, (PROCESSES, server.port, domain, raw_key), PROCESSES, "API client process"
        )

        def run(mode: str, n: int, seconds: float) -> dict:
            cap = max(1, MAX_REQUESTS // ROUNDS // n)
            message = {"mode": mode, "clients": n, "max_requests": cap}
            cpu = server.cpu_seconds()
            result = pool.run(message, n=min(PROCESSES, n), seconds=seconds)
            result["cpu"] = server.cpu_seconds() - cpu
            return result

        for n in CLIENT_COUNTS:
            for mode in MODES:
                warmups.append((mode, run(mode, n, WARMUP_SECONDS)))
            slices: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for i in range(ROUNDS):  # ABBA...: drift on the machine falls on both alike
                for mode in MODES if i % 2 == 0 else MODES[::-1]:
                    slices[mode].append(run(mode, n, SECONDS / ROUNDS))
            for mode in MODES:
                results[(mode, n)] = _merge(slices[mode])
    finally:
        if clients is not None:
            clients.close()
        server_log = server.log_tail()
        server.stop()

    rows = [
        ("server", f"{server.describe()}  (gunicorn {gunicorn.__version__}, DEBUG off)"),
        (
            "clients",
            f"{PROCESSES} processes, one http.client connection per client thread (kept alive "
            f"where the server allows), closed loop; per client count {WARMUP_SECONDS:g} s warm-up of each endpoint, then "
            f"{SECONDS:g} s per phase in {ROUNDS} slices, baseline and subject alternating",
        ),
        ("machine", f"1-minute load average {load_before:.2f} before the run (others' work)"),
    ]
    for n in CLIENT_COUNTS:
        base, subject = results[("account", n)], results[("payments", n)]
        share = f"{subject['rate'] / base['rate']:.0%}" if base["rate"] else "n/a"
        p50 = percentile(subject["lat"], 0.5) / percentile(base["lat"], 0.5) if base["lat"] else float("nan")
        rows += [
            (f"baseline: GET {ACCOUNT_PATH}, {n} clients", _line(base)),
            (f"create+confirm: POST {PAYMENTS_PATH}, {n} clients", _line(subject)),
            (f"create+confirm / baseline, {n} clients", f"{share} of the req/s, p50 {p50:.1f}x"),
        ]
    all_runs = [(f"{mode} {n} clients", r) for (mode, n), r in results.items()]
    all_runs += [(f"{mode} warm-up", r) for mode, r in warmups]
    for name, r in all_runs:
        if r["errors"]:
            rows.append((f"{name} errors", str(r["errors"])))
    bench_report(
        "REST API over HTTP, simulator at 0 ms; server, clients, PostgreSQL and Redis on one machine", rows
    )
    if any(r["errors"] for _, r in all_runs):
        print(f"   server log (tail):\n{server_log}")

    assert not [r["errors"] for _, r in all_runs if r["errors"]]
    created = sum(_created(r) for (mode, _), r in results.items() if mode == "payments")
    created += sum(_created(r) for mode, r in warmups if mode == "payments")
    assert created > 0
    with tenant_context(market):
        assert PaymentIntent.objects.count() == created
        assert PaymentIntent.objects.exclude(status="succeeded").count() == 0
        # Never charged twice: one attempt and one simulator charge per payment.
        assert PaymentAttempt.objects.count() == created
        assert SimulatorCharge.objects.filter(attempt_id__startswith="pay_").count() == created
        # Every POST went through the idempotency layer, and finished there.
        assert IdempotencyRecord.objects.filter(status="complete").count() == created
