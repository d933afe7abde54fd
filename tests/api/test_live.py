"""Real HTTP against a real server (gunicorn, 2 processes x 4 threads) on committed data."""

from __future__ import annotations

import threading

import pytest
import requests
from django_tenants.utils import tenant_context
from hypothesis import HealthCheck, Phase, given, settings

from tests.api.live import Server, live_marketplace_create

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker):
    server = Server(env={"API_RATE_LIMIT_PER_SECOND": "10000", "API_RATE_LIMIT_BURST": "10000"})
    try:
        with django_db_blocker.unblock():
            marketplace = live_marketplace_create(server)
        server.wait_ready()
        yield marketplace
    finally:
        server.stop()


def _set_simulator_latency(tenant, p50_ms: int) -> None:
    from apps.payments.models import GatewayAccount

    with tenant_context(tenant):
        GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": p50_ms}})


def test_concurrent_identical_requests_make_exactly_one_payment(live, committed):
    from apps.payments.models import PaymentIntent, SimulatorCharge

    # given a gateway slow enough that the first request is still in flight when the others arrive
    _set_simulator_latency(live.tenant, 300)
    body = {"amount": 4321, "currency": "EUR", "payment_method": "pm_card_visa", "confirm": True}
    headers = live.headers(**{"Idempotency-Key": "race-1"})
    barrier = threading.Barrier(10)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def fire() -> None:
        barrier.wait()
        response = requests.post(live.url("/api/v1/payments"), json=body, headers=headers, timeout=30)
        with lock:
            responses.append(response)

    # when ten identical requests are sent at once
    threads = [threading.Thread(target=fire) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    replay = requests.post(live.url("/api/v1/payments"), json=body, headers=headers, timeout=30)

    # then one did the work, the others were told it is in flight or got its response replayed
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if r.headers.get("Idempotent-Replayed") != "true"]
    assert len(originals) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == originals[0].json()
    assert {r.json()["id"] for r in created} == {originals[0].json()["id"]}
    with tenant_context(live.tenant):
        assert PaymentIntent.objects.filter(amount=4321).count() == 1
        assert SimulatorCharge.objects.filter(amount=4321).count() == 1
    _set_simulator_latency(live.tenant, 0)


def test_schemathesis_finds_no_server_errors_or_schema_violations(live, committed):
    import schemathesis
    from schemathesis.checks import (
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    _set_simulator_latency(live.tenant, 0)
    schema = schemathesis.openapi.from_url(
        live.url("/api/v1/schema/?format=json"), headers={"Host": live.host}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    calls: list[int] = []
    for operation in operations:
        # auth enforced: no key is 401 on every operation
        bare = requests.request(
            operation.method.upper(),
            live.url(operation.path.replace("{", "").replace("}", "")),
            headers={"Host": live.host},
            timeout=30,
        )
        assert bare.status_code == 401, (operation.method, operation.path, bare.status_code)

        @settings(
            max_examples=8,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:
            response = case.call(base_url=live.server.base_url, headers=live.headers())
            calls.append(response.status_code)
            case.validate_response(response, checks=checks)

        run()
    assert len(calls) >= 5 * len(operations)
    assert 201 in calls and 200 in calls  # it got past validation, not only errors
