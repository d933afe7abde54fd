from __future__ import annotations

from apps.tenants.services import api_key_create, api_key_revoke


def test_key_of_tenant_a_works_on_its_host_and_the_public_host(db, tenant_a, host_client):
    _, raw = api_key_create(tenant=tenant_a)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    on_own_host = host_client("alpha.localhost").get("/api/v1/account", **auth)
    on_public_host = host_client("localhost").get("/api/v1/account", **auth)

    assert on_own_host.status_code == 200 and on_own_host.json()["id"] == "alpha"
    assert on_public_host.status_code == 200 and on_public_host.json()["id"] == "alpha"


def test_key_of_tenant_a_is_refused_on_tenant_b_host(db, tenant_a, tenant_b, host_client):
    _, raw = api_key_create(tenant=tenant_a)

    response = host_client("beta.localhost").get("/api/v1/account", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "type": "authentication_error",
            "code": "invalid_api_key",
            "message": "Invalid API key provided.",
            "param": None,
        }
    }


def test_revoked_and_missing_keys_are_refused(db, tenant_a, host_client):
    key, raw = api_key_create(tenant=tenant_a)
    api_key_revoke(key=key)

    revoked = host_client("alpha.localhost").get("/api/v1/account", HTTP_AUTHORIZATION=f"Bearer {raw}")
    missing = host_client("alpha.localhost").get("/api/v1/account")

    assert revoked.status_code == 401
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"


def test_unknown_host_gets_json_404_under_api_and_a_page_elsewhere(db, host_client):
    api = host_client("nobody.localhost").get("/api/v1/account")
    page = host_client("nobody.localhost").get("/admin/")

    assert api.status_code == 404
    assert api.json()["error"]["code"] == "unknown_host"
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
    assert b"No marketplace here" in page.content


def test_unknown_api_route_is_json_404(db, tenant_a, host_client):
    _, raw = api_key_create(tenant=tenant_a)
    response = host_client("alpha.localhost").get("/api/v1/nope", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_every_response_carries_a_request_id(db, host_client):
    response = host_client("alpha.localhost").get("/healthz", HTTP_X_REQUEST_ID="req_from_client_1")
    assert response["Request-Id"] == "req_from_client_1"
    generated = host_client("alpha.localhost").get("/healthz")
    assert generated["Request-Id"].startswith("req_")


def test_operator_admin_login_page_on_tenant_host_shows_the_marketplace(db, tenant_a, host_client):
    response = host_client("alpha.localhost").get("/admin/login/")
    assert response.status_code == 200
    assert b"Alpha Market" in response.content


def test_operator_can_log_in_to_own_admin_but_not_another(db, tenant_a, tenant_b, host_client):
    client_a = host_client("alpha.localhost")
    ok = client_a.post(
        "/admin/login/?next=/admin/", {"username": "ops@alpha.test", "password": "test-password-123"}
    )
    assert ok.status_code == 302 and ok["Location"] == "/admin/"
    client_b = host_client("beta.localhost")
    refused = client_b.post(
        "/admin/login/?next=/admin/", {"username": "ops@alpha.test", "password": "test-password-123"}
    )
    assert refused.status_code == 200  # the form again: that user does not exist in beta
