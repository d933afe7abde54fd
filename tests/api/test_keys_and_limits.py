from __future__ import annotations

from apps.tenants.models import ApiKey
from apps.tenants.services import api_key_revoke
from tests.api.conftest import pay


def test_restricted_key_reads_and_writes_only_what_it_is_granted(api, restricted_api):
    payment = pay(api)
    reader = restricted_api({"payments": "read"})
    writer = restricted_api({"payments": "write", "customers": "read"})

    assert reader.get(f"/api/v1/payments/{payment['id']}").status_code == 200
    denied = reader.post(
        "/api/v1/payments", {"amount": 1, "currency": "usd", "payment_method": "pm_card_visa"}
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error"
    assert "payments" in denied.json()["error"]["message"]
    assert reader.get("/api/v1/customers").status_code == 403
    assert reader.post(f"/api/v1/payments/{payment['id']}/refunds").status_code == 403
    assert reader.get("/api/v1/balance").status_code == 403

    assert (
        writer.post(
            "/api/v1/payments", {"amount": 1, "currency": "usd", "payment_method": "pm_card_visa"}
        ).status_code
        == 201
    )
    assert writer.get("/api/v1/customers").status_code == 200
    assert writer.post("/api/v1/customers", {}).status_code == 403


def test_revoked_key_is_401_and_last_used_is_recorded(api):
    assert api.get("/api/v1/payments").status_code == 200
    key = ApiKey.objects.get(pk=api.key.pk)
    assert key.last_used_at is not None

    api_key_revoke(key=key)

    response = api.get("/api/v1/payments")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_rate_limit_is_429_with_retry_after(api, settings):
    settings.API_RATE_LIMIT_PER_SECOND = 0.5
    settings.API_RATE_LIMIT_BURST = 2

    statuses = [api.get("/api/v1/customers").status_code for _ in range(3)]
    limited = api.get("/api/v1/customers")

    assert statuses == [200, 200, 429]
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited["Retry-After"]) >= 1
