from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.payments.breaker import CircuitBreaker
from apps.payments.models import GatewayAccount
from apps.tenants.services import api_key_create


class ApiClient:
    """A test client on a marketplace's host with a secret key; JSON in, JSON out."""

    def __init__(self, host: str, raw_key: str):
        self.client = Client(HTTP_HOST=host)
        self.raw_key = raw_key

    def _headers(self, headers: dict | None) -> dict:
        out = {"HTTP_AUTHORIZATION": f"Bearer {self.raw_key}"}
        for name, value in (headers or {}).items():
            out["HTTP_" + name.upper().replace("-", "_")] = value
        return out

    def get(self, path: str, params: dict | None = None, headers: dict | None = None):
        return self.client.get(path, params or {}, **self._headers(headers))

    def post(self, path: str, body=None, headers: dict | None = None, raw: bytes | str | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", **self._headers(headers))

    def delete(self, path: str, headers: dict | None = None):
        return self.client.delete(path, **self._headers(headers))


@pytest.fixture
def api(in_tenant_a, tenant_a):
    """Tenant A's API with a full-access key; simulator gateways without latency."""
    GatewayAccount.objects.filter(kind="simulator").update(settings={"latency_ms": {"p50": 0}})
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()
    key, raw = api_key_create(tenant=tenant_a, name="tests")
    client = ApiClient("alpha.localhost", raw)
    client.key = key  # type: ignore[attr-defined]
    yield client
    for name in ("primary", "secondary"):
        CircuitBreaker(name).reset()


@pytest.fixture
def restricted_api(api, tenant_a):
    def make(scopes: dict) -> ApiClient:
        _, raw = api_key_create(tenant=tenant_a, scopes=scopes)
        return ApiClient("alpha.localhost", raw)

    return make


def pay(api: ApiClient, **overrides):
    body = {"amount": 2000, "currency": "USD", "payment_method": "pm_card_visa", "confirm": True, **overrides}
    response = api.post("/api/v1/payments", body)
    assert response.status_code == 201, response.json()
    return response.json()
