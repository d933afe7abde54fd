"""Client processes for the payment throughput benchmark (tests/benchmarks/test_payments.py).

Started with multiprocessing "spawn", so nothing here imports Django at module level: each client
sets its environment, calls ``django.setup()`` and enters the benchmark marketplace. A client runs
one phase at a time when told to: ``mesh`` (``payment_intent_create(confirm=True)``, the service
path a storefront's API call takes) or ``direct`` (the simulator's ``authorize`` alone: the same
gateway work without the mesh, the baseline).
"""

from __future__ import annotations

import os
import secrets
import time
import traceback

from cryptography.fernet import Fernet


def client_main(index: int, db_url: str, tenant_schema: str, inbox, outbox) -> None:
    try:
        _client(index, db_url, tenant_schema, inbox, outbox)
    except BaseException:
        outbox.put(("crashed", index, traceback.format_exc()))
        raise


def _client(index, db_url, tenant_schema, inbox, outbox):
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = db_url
    os.environ["LOG_LEVEL"] = "WARNING"
    # As in production (and as pytest runs the parent): no per-query debug logging.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + secrets.token_hex(16))
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    import django

    django.setup()
    from django.db import connection
    from django_tenants.utils import tenant_context

    from apps.payments.gateways.base import ChargeRequest, GatewayConfig
    from apps.payments.gateways.simulator import SimulatorGateway
    from apps.payments.services import payment_intent_create
    from apps.tenants.models import Marketplace

    tenant = Marketplace.objects.get(schema_name=tenant_schema)
    gateway = SimulatorGateway(GatewayConfig(account_id="primary", settings={"latency_ms": {"p50": 0}}))
    serial = 0

    def mesh_one() -> str:
        intent = payment_intent_create(
            amount=1000, currency="usd", payment_method="pm_card_visa", confirm=True
        )
        return intent.status

    def direct_one() -> str:
        nonlocal serial
        serial += 1
        result = gateway.authorize(
            ChargeRequest(
                attempt_id=f"bench_{index}_{serial}_{secrets.token_hex(6)}",
                amount=1000,
                currency="USD",
                payment_method="pm_card_visa",
            )
        )
        return "succeeded" if result.outcome == "succeeded" else str(result.outcome)

    with tenant_context(tenant):
        for _ in range(5):  # warm the connection, caches and prepared statements
            mesh_one()
            direct_one()
        outbox.put(("ready", index, None))
        while True:
            cmd = inbox.get()
            if cmd["kind"] == "stop":
                break
            one = mesh_one if cmd["mode"] == "mesh" else direct_one
            delay = cmd["start"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            latencies: list[float] = []
            errors: dict[str, int] = {}
            deadline = cmd["deadline"]
            now = time.monotonic()
            while now < deadline:
                try:
                    status = one()
                except Exception as exc:
                    status = f"{type(exc).__name__}: {str(exc)[:200]}"
                end = time.monotonic()
                if status == "succeeded":
                    latencies.append(end - now)
                else:
                    errors[status] = errors.get(status, 0) + 1
                now = end
            outbox.put(("done", index, {"latencies": latencies, "errors": errors, "end": now}))
    connection.close()
