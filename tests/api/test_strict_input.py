"""Strict parameters (unknown fields, wrong JSON types, unknown payment-method tokens), the
public shape of last_error, size and depth limits on bodies, and errors that are JSON whatever
happens (a real bug included, DEBUG on or off)."""

from __future__ import annotations

import json
import re

import pytest
from django.middleware.common import CommonMiddleware
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.api.v1 import customers as customers_api
from apps.customers.models import Customer
from apps.payments.models import GatewayAccount, PaymentIntent
from tests.api.conftest import pay

GOOD = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"}


def _error(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


# --------------------------------------------------------------------------- strict parameters


def test_unknown_fields_are_refused_naming_them_and_nothing_is_created(api):
    error = _error(api.post("/api/v1/payments", {**GOOD, "amount_in_cents": 5, "colour": "red"}))

    assert error["code"] == "parameter_unknown"
    assert error["param"] == "amount_in_cents"
    assert error["message"] == "Received unknown parameters: amount_in_cents, colour."
    assert PaymentIntent.objects.count() == 0


def test_unknown_fields_are_refused_on_every_kind_of_post(api):
    customer = api.post("/api/v1/customers", {"name": "Jenny"}).json()
    payment = pay(api)
    cases = [
        ("/api/v1/customers", {"name": "x", "nickname": "y"}, "nickname"),
        (f"/api/v1/customers/{customer['id']}", {"phone": "1"}, "phone"),
        (f"/api/v1/payments/{payment['id']}/refunds", {"amount": 1, "why": "x"}, "why"),
        ("/api/v1/products", {"name": "p", "price": 1}, "price"),
        (
            "/api/v1/webhook_endpoints",
            {"url": "https://e.com", "enabled_events": ["*"], "secret": "s"},
            "secret",
        ),
        (f"/api/v1/vendors/{'ven_x'}/payouts", {"amount": 1}, None),  # a 404 first: the vendor is unknown
    ]
    for path, body, param in cases:
        response = api.post(path, body)
        if param is None:
            assert response.status_code == 404
            continue
        error = _error(response)
        assert (error["code"], error["param"]) == ("parameter_unknown", param), path
    assert Customer.objects.count() == 1


def test_metadata_and_json_fields_take_any_key(api):
    body = api.post("/api/v1/customers", {"name": "Jenny", "metadata": {"anything": "goes", "x_y": "z"}})

    assert body.status_code == 201
    assert body.json()["metadata"] == {"anything": "goes", "x_y": "z"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/v1/payments", {**GOOD, "amount": "100"}, "amount"),
        ("/api/v1/payments", {**GOOD, "currency": 840}, "currency"),
        ("/api/v1/payments", {**GOOD, "payment_method": 42}, "payment_method"),
        ("/api/v1/payments", {**GOOD, "confirm": "true"}, "confirm"),
        ("/api/v1/payments", {**GOOD, "confirm": 1}, "confirm"),
        ("/api/v1/payments", {**GOOD, "description": 5}, "description"),
        ("/api/v1/payments", {**GOOD, "metadata": {"order": 6735}}, "metadata.order"),
        ("/api/v1/payments", {**GOOD, "splits": {"vendor": "ven_x"}}, "splits"),
        ("/api/v1/customers", {"name": ["Jenny"]}, "name"),
        ("/api/v1/webhook_endpoints", {"url": "https://e.com", "enabled_events": [1]}, "enabled_events[0]"),
        (
            "/api/v1/vendors",
            {
                "email": "v@e.com",
                "name": "V",
                "country": "US",
                "default_currency": "usd",
                "payout_minimum": "5",
            },
            "payout_minimum",
        ),
    ],
)
def test_wrong_json_types_are_refused_naming_the_param(api, path, body, param):
    error = _error(api.post(path, body))

    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "parameter_invalid",
        param,
    )
    assert PaymentIntent.objects.count() == 0 and Customer.objects.count() == 0


def test_form_encoded_bodies_still_carry_numbers_as_strings(api):
    response = api.client.post(
        "/api/v1/payments",
        "amount=2000&currency=usd&payment_method=pm_card_visa&confirm=true",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Bearer {api.raw_key}",
    )

    assert response.status_code == 201, response.content
    assert (response.json()["amount"], response.json()["status"]) == (2000, "succeeded")


@pytest.mark.parametrize("token", ["pm_nope", "tok_garbage", "pm_card_nosuch", "4242", "card_x"])
def test_an_unknown_payment_method_is_resource_missing_and_nothing_is_created(api, token):
    error = _error(api.post("/api/v1/payments", {**GOOD, "payment_method": token, "confirm": True}))

    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "resource_missing",
        "payment_method",
    )
    assert PaymentIntent.objects.count() == 0


def test_a_processor_token_is_taken_when_that_processor_is_configured(api):
    GatewayAccount.objects.create(name="stripe_main", kind="stripe", enabled=False)
    assert (
        _error(api.post("/api/v1/payments", {**GOOD, "payment_method": "pm_1PgaftB7WZ01zgkWm3waTcFp"}))[
            "code"
        ]
        == "resource_missing"
    )

    GatewayAccount.objects.filter(name="stripe_main").update(enabled=True)
    created = api.post("/api/v1/payments", {**GOOD, "payment_method": "pm_1PgaftB7WZ01zgkWm3waTcFp"})

    assert created.status_code == 201, created.content
    assert created.json()["payment_method"] == "pm_1PgaftB7WZ01zgkWm3waTcFp"


def test_last_error_carries_only_the_public_decline_fields(api):
    declined = pay(api, payment_method="pm_card_chargeDeclinedInsufficientFunds")
    generic = pay(api, payment_method="pm_card_chargeDeclined")

    assert declined["status"] == "failed"
    assert declined["last_error"] == {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "advice_code": "try_again_later",
        "message": declined["last_error"]["message"],
    }
    assert isinstance(declined["last_error"]["message"], str) and declined["last_error"]["message"]
    assert set(generic["last_error"]) == {"type", "code", "decline_code", "advice_code", "message"}
    assert generic["last_error"]["advice_code"] is None
    # the internal reasons stay stored for the admin timeline
    stored = PaymentIntent.objects.get(pk=generic["id"]).last_error
    assert {"why", "action", "attempt"} <= set(stored)
    assert pay(api)["last_error"] is None


# --------------------------------------------------------------------------- size and depth


def _deep(depth: int, kind: str = "list") -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@pytest.mark.parametrize("depth", [33, 3_000, 10_000, 100_000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_deeply_nested_json_is_a_clear_400(api, depth, kind):
    for path in ("/api/v1/payments", "/api/v1/customers"):
        raw = _deep(depth, kind)
        error = _error(api.post(path, raw=raw))
        assert (error["code"], error["param"]) == ("invalid_json", None)
        keyed = _error(api.post(path, raw=raw, headers={"Idempotency-Key": f"deep-{depth}-{kind}"}))
        assert keyed["code"] == "invalid_json"


def test_json_at_the_depth_limit_reaches_validation(api):
    error = _error(api.post("/api/v1/payments", {**GOOD, "splits": [json.loads(_deep(30))]}))

    assert error["code"] != "invalid_json"


def test_a_body_over_the_size_limit_is_a_clear_400(api, settings):
    settings.API_MAX_BODY_BYTES = 10_000
    big = {"name": "x", "metadata": {f"k{i}": "v" * 400 for i in range(40)}}

    error = _error(api.post("/api/v1/customers", big))

    assert error["code"] == "parameter_invalid"
    assert "at most 10000" in error["message"]
    assert Customer.objects.count() == 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
_DEEP = st.integers(1, 20_000).map(lambda d: _deep(d, "list")) | st.integers(1, 20_000).map(
    lambda d: _deep(d, "object")
)


@pytest.fixture(scope="module")
def post_routes(django_db_setup, django_db_blocker) -> list[str]:
    with django_db_blocker.unblock():
        schema = json.loads(
            Client(HTTP_HOST="alpha.localhost").get("/api/v1/schema/", {"format": "json"}).content
        )
    return [
        path.replace("{", "").replace("}", "")
        for path, operations in schema["paths"].items()
        if "post" in operations
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_deep_large_and_odd_json_on_every_post_route_never_errors_on_the_server(api, post_routes, data):
    path = data.draw(st.sampled_from(post_routes))
    body = data.draw(
        _DEEP
        | _JSON.map(json.dumps)
        | st.dictionaries(
            st.sampled_from(["amount", "currency", "name", "metadata", "splits", "url"]), _JSON
        ).map(json.dumps)
        | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
        | st.integers(0, 3).map(lambda n: "x" * (1_100_000 + n))
    )

    response = api.post(path, raw=body)

    assert response.status_code < 500, (path, body[:200], response.content[:500])
    assert response["Content-Type"] == "application/json"


# --------------------------------------------------------------------------- errors are JSON


@pytest.mark.parametrize("debug", [True, False])
def test_a_real_bug_answers_json_with_the_request_id_whatever_debug_says(api, settings, monkeypatch, debug):
    settings.DEBUG = debug

    def broken(**kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(customers_api, "customer_create", broken)

    response = api.post("/api/v1/customers", {"name": "Jenny"})

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "internal_error")
    assert error["request_id"] == response["Request-Id"]
    assert "ZeroDivisionError" not in response.content.decode()


@pytest.mark.parametrize("debug", [True, False])
def test_an_error_page_from_outside_drf_under_the_api_becomes_json(api, settings, monkeypatch, debug):
    settings.DEBUG = debug

    def broken(self, request):
        raise RuntimeError("a bug in a middleware")

    monkeypatch.setattr(CommonMiddleware, "process_request", broken)
    client = Client(HTTP_HOST="alpha.localhost", raise_request_exception=False)

    response = client.get("/api/v1/customers", HTTP_AUTHORIZATION=f"Bearer {api.raw_key}")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["type"], error["code"], error["request_id"]) == (
        "api_error",
        "internal_error",
        response["Request-Id"],
    )


def test_too_many_fields_is_a_json_400(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    query = "&".join(f"f{i}=1" for i in range(20))

    response = api.get("/api/v1/customers?" + query)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "parameter_invalid"


def test_the_schema_says_request_bodies_take_no_other_field(db):
    schema = json.loads(
        Client(HTTP_HOST="alpha.localhost").get("/api/v1/schema/", {"format": "json"}).content
    )
    components = schema["components"]["schemas"]

    assert components["PaymentCreateInRequest"]["additionalProperties"] is False
    assert components["PaymentCreateInRequest"]["properties"]["metadata"]["additionalProperties"] == {
        "type": "string",
        "maxLength": 500,
    }
    assert all(
        c.get("additionalProperties") is False for n, c in components.items() if n.endswith("InRequest")
    )


@pytest.fixture(scope="module")
def read_routes(django_db_setup, django_db_blocker) -> list[tuple[str, str]]:
    """Every GET and DELETE of the API's schema (but the schema's own pages), its path's ids
    filled with one that names nothing."""
    with django_db_blocker.unblock():
        schema = json.loads(
            Client(HTTP_HOST="alpha.localhost").get("/api/v1/schema/", {"format": "json"}).content
        )
    return [
        (method, re.sub(r"\{[^}]+\}", "x_nope", path))
        for path, operations in schema["paths"].items()
        for method in ("get", "delete")
        if method in operations and "/schema" not in path
    ]


def test_every_read_refuses_an_unknown_query_parameter_naming_it(api, read_routes):
    assert len(read_routes) > 25
    for method, path in read_routes:
        response = getattr(api.client, method)(f"{path}?foo=bar", HTTP_AUTHORIZATION=f"Bearer {api.raw_key}")
        assert response.status_code == 400, (method, path, response.content)
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("parameter_unknown", "foo"), (method, path)
        assert error["message"] == "Received unknown parameter: foo."


def test_list_filters_are_the_documented_ones_with_their_values(api):
    pay(api)
    # documented parameters are taken: the created range's four ends, pagination, expansion
    for params in ({"created[gt]": 1}, {"created[lt]": 4102444800, "limit": 1}, {"expand[]": "attempts"}):
        response = api.get("/api/v1/payments", params)
        assert response.status_code == 200, (params, response.json())
        assert len(response.json()["data"]) == 1
    # an undocumented one on a list is refused, and so is a value outside an enumeration
    for path, params, code, param in (
        ("/api/v1/payouts", {"created[gt]": 1}, "parameter_unknown", "created[gt]"),
        ("/api/v1/payouts", {"status": "bogus"}, "parameter_invalid", "status"),
        ("/api/v1/vendors", {"status": "bogus"}, "parameter_invalid", "status"),
        ("/api/v1/prices", {"active": "maybe"}, "parameter_invalid", "active"),
        ("/api/v1/payments", {"status": "bogus"}, "parameter_invalid", "status"),
    ):
        response = api.get(path, params)
        assert response.status_code == 400, (path, params)
        assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (code, param)
    assert api.get("/api/v1/payouts", {"status": "paid"}).status_code == 200
    assert api.get("/api/v1/prices", {"active": "true"}).status_code == 200
