from __future__ import annotations

from django.contrib.staticfiles import finders

from tests.api.conftest import pay

GOOD = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"}


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert "Request-Id" in response
    return response.json()["error"]


def test_bad_input_is_400_naming_the_param(api):
    cases = [
        ({**GOOD, "amount": "lots"}, "amount"),
        ({**GOOD, "amount": 10.5}, "amount"),
        ({**GOOD, "amount": 20.0}, "amount"),
        ({**GOOD, "amount": True}, "amount"),
        ({**GOOD, "amount": 0}, "amount"),
        ({**GOOD, "amount": 10**30}, "amount"),
        ({**GOOD, "amount": 10**12}, "amount"),  # above the marketplace's limit
        ({**GOOD, "currency": "xyz"}, "currency"),
        ({**GOOD, "currency": 5}, "currency"),
        ({k: v for k, v in GOOD.items() if k != "payment_method"}, "payment_method"),
        ({**GOOD, "payment_method": "pm_card_nosuch"}, "payment_method"),
        ({**GOOD, "capture_method": "later"}, "capture_method"),
        ({**GOOD, "metadata": ["x"]}, "metadata"),
        ({**GOOD, "confirm": "perhaps"}, "confirm"),
    ]
    for body, param in cases:
        error = _error(api.post("/api/v1/payments", body), 400)
        assert error["param"] == param, (body, error)
        assert error["type"] == "invalid_request_error"


def test_missing_param_code_and_unknown_fields_refused(api):
    missing = _error(api.post("/api/v1/payments", {"currency": "usd", "payment_method": "pm_card_visa"}), 400)
    assert (missing["code"], missing["param"]) == ("parameter_missing", "amount")

    unknown = _error(api.post("/api/v1/payments", {**GOOD, "flavour": "vanilla"}), 400)
    assert (unknown["code"], unknown["param"]) == ("parameter_unknown", "flavour")


def test_malformed_bodies_are_400_never_500(api):
    assert _error(api.post("/api/v1/payments", raw="{not json"), 400)["code"] == "invalid_json"
    assert _error(api.post("/api/v1/payments", raw="[1, 2]"), 400)["type"] == "invalid_request_error"
    assert _error(api.post("/api/v1/payments", raw='"text"'), 400)["type"] == "invalid_request_error"
    assert _error(api.post("/api/v1/payments", raw="1" * 5000), 400)["type"] == "invalid_request_error"
    assert _error(api.post("/api/v1/customers", {"name": "a\x00b"}), 400)["param"] == "name"
    assert _error(api.get("/api/v1/payments", {"customer": "a\x00"}), 400)["param"] == "customer"
    assert _error(api.get("/api/v1/payments/pay%00x"), 404)["code"] == "resource_missing"


def test_currency_any_case_in_lowercase_out(api):
    assert pay(api, currency="eUr")["currency"] == "eur"


def test_pagination_walks_forward_and_back(api):
    ids = [api.post("/api/v1/customers", {"email": f"page{i}@example.com"}).json()["id"] for i in range(5)]
    newest_first = list(reversed(ids))

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"starting_after": cursor} if cursor else {})}
        body = api.get("/api/v1/customers", params).json()
        seen += [c["id"] for c in body["data"]]
        pages += 1
        if not body["has_more"]:
            break
        cursor = body["data"][-1]["id"]

    assert [i for i in seen if i in ids] == newest_first
    first_two = api.get("/api/v1/customers", {"limit": 2}).json()
    assert [c["id"] for c in first_two["data"]] == newest_first[:2] and first_two["has_more"] is True
    before = api.get("/api/v1/customers", {"limit": 2, "ending_before": newest_first[3]}).json()
    assert [c["id"] for c in before["data"]] == newest_first[1:3] and before["has_more"] is True
    assert (
        api.get("/api/v1/customers").json()["data"][:5]
        == api.get("/api/v1/customers", {"limit": 5}).json()["data"]
    )


def test_pagination_rejects_bad_parameters(api):
    for limit in ("0", "101", "ten"):
        assert _error(api.get("/api/v1/customers", {"limit": limit}), 400)["param"] == "limit"
    assert (
        _error(api.get("/api/v1/customers", {"starting_after": "cus_nope"}), 400)["param"] == "starting_after"
    )
    both = api.get("/api/v1/customers", {"starting_after": "a", "ending_before": "b"})
    assert _error(both, 400)["param"] == "ending_before"


def test_openapi_schema_and_offline_docs(api):
    schema = api.client.get("/api/v1/schema/", {"format": "json"})
    docs = api.client.get("/api/v1/docs/")

    assert schema.status_code == 200
    spec = schema.json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/customers",
        "/api/v1/customers/{customer_id}",
        "/api/v1/payments",
        "/api/v1/payments/{payment_id}",
        "/api/v1/payments/{payment_id}/confirm",
        "/api/v1/payments/{payment_id}/capture",
        "/api/v1/payments/{payment_id}/cancel",
        "/api/v1/payments/{payment_id}/refunds",
        "/api/v1/refunds",
        "/api/v1/refunds/{refund_id}",
        "/api/v1/balance",
        "/api/v1/ledger/transactions",
        "/api/v1/events",
        "/api/v1/events/{event_id}",
        "/api/v1/ledger/events",
        "/api/v1/ledger/events/{event_id}",
        "/api/v1/webhook_endpoints",
        "/api/v1/webhook_endpoints/{endpoint_id}",
        "/api/v1/webhook_endpoints/{endpoint_id}/roll_secret",
    ):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["secretKey"]["scheme"] == "bearer"
    create = spec["paths"]["/api/v1/payments"]["post"]
    assert create["requestBody"]["content"]["application/json"]["examples"]
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "https://" not in html and "cdn" not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
