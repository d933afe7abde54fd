"""Tenant B's key on every route of tenant A's objects: 401 on A's host, 404 on B's host and on the
public host (where B's key chooses B's schema); the answer never contains A's ids."""

from __future__ import annotations

import json

from django_tenants.utils import tenant_context

from apps.tenants.services import api_key_create
from tests.api.conftest import ApiClient, pay


def test_tenant_b_key_sees_nothing_of_tenant_a(api, tenant_a, tenant_b):
    # given objects of every kind in tenant A
    customer = api.post("/api/v1/customers", {"email": "a-only@example.com"}).json()
    paid = pay(api, customer=customer["id"])
    held = pay(api, capture_method="manual")
    unconfirmed = pay(api, confirm=False)
    refund = api.post(f"/api/v1/payments/{paid['id']}/refunds", {"amount": 100}).json()
    event = api.get("/api/v1/events", {"limit": 1}).json()["data"][0]
    ledger_event = api.get("/api/v1/ledger/events", {"limit": 1}).json()["data"][0]
    endpoint = api.post(
        "/api/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/a-only", "enabled_events": ["*"]}
    ).json()
    txn = api.get("/api/v1/ledger/transactions", {"limit": 1}).json()["data"][0]
    secrets = {
        customer["id"],
        paid["id"],
        held["id"],
        unconfirmed["id"],
        refund["id"],
        event["id"],
        ledger_event["id"],
        endpoint["id"],
        endpoint["secret"],
        txn["id"],
    }
    with tenant_context(tenant_b):
        _, raw_b = api_key_create(tenant=tenant_b)

    routes = [
        ("get", f"/api/v1/customers/{customer['id']}"),
        ("post", f"/api/v1/customers/{customer['id']}"),
        ("get", f"/api/v1/payments/{paid['id']}"),
        ("post", f"/api/v1/payments/{unconfirmed['id']}/confirm"),
        ("post", f"/api/v1/payments/{held['id']}/capture"),
        ("post", f"/api/v1/payments/{held['id']}/cancel"),
        ("post", f"/api/v1/payments/{paid['id']}/refunds"),
        ("get", f"/api/v1/refunds/{refund['id']}"),
        ("get", f"/api/v1/events/{event['id']}"),
        ("get", f"/api/v1/ledger/events/{ledger_event['id']}"),
        ("get", f"/api/v1/webhook_endpoints/{endpoint['id']}"),
        ("post", f"/api/v1/webhook_endpoints/{endpoint['id']}"),
        ("delete", f"/api/v1/webhook_endpoints/{endpoint['id']}"),
        ("post", f"/api/v1/webhook_endpoints/{endpoint['id']}/roll_secret"),
    ]
    lists = [
        ("/api/v1/customers", {}),
        ("/api/v1/payments", {"customer": customer["id"]}),
        ("/api/v1/refunds", {"payment": paid["id"]}),
        ("/api/v1/events", {"limit": 100}),
        ("/api/v1/events", {"object": paid["id"]}),
        ("/api/v1/ledger/events", {"limit": 100}),
        ("/api/v1/webhook_endpoints", {"limit": 100}),
        ("/api/v1/ledger/transactions", {"limit": 100}),
    ]
    for host, expected in (("alpha.localhost", 401), ("beta.localhost", 404), ("localhost", 404)):
        b = ApiClient(host, raw_b)
        # when B's key calls each route of A's objects
        for method, path in routes:
            response = getattr(b, method)(path)
            # then it is refused and nothing of A is revealed
            assert response.status_code == expected, (host, method, path, response.status_code)
            assert not any(secret in response.content.decode() for secret in secrets), (host, path)
        for path, params in lists:
            response = b.get(path, params)
            if expected == 401:
                assert response.status_code == 401
            else:
                assert response.status_code == 200, (host, path)
                assert not any(secret in json.dumps(response.json()) for secret in secrets), (host, path)
        # A's id as a cursor is unknown in B (the message only echoes the caller's own input)
        cursor = b.get("/api/v1/customers", {"starting_after": customer["id"]})
        assert cursor.status_code == (401 if expected == 401 else 400)

    # and A's objects are unchanged
    with tenant_context(tenant_a):
        assert api.get(f"/api/v1/payments/{held['id']}").json()["status"] == "requires_capture"
        assert api.get(f"/api/v1/payments/{unconfirmed['id']}").json()["status"] == "requires_confirmation"
        assert api.get(f"/api/v1/payments/{paid['id']}").json()["amount_refunded"] == 100
        assert api.get(f"/api/v1/customers/{customer['id']}").json() == customer
