"""Card numbers are refused at the API's edge: in every writable field of every route (read from
the OpenAPI schema, so a new route is covered without touching this file), in metadata keys and
values, query parameters, the URL and the Idempotency-Key header; and afterwards no table, log
line, email or outbound event holds one."""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.core import mail
from django.db import connection
from django.test import Client

from apps.core.pan import find_card_number
from apps.customers.models import Customer
from apps.payments.models import PaymentIntent
from apps.vendors.models import Vendor
from apps.webhooks.models import OutboundEvent

NUMBERS = {
    "visa": "4242424242424242",
    "mastercard": "5555555555554444",
    "amex": "378282246310005",
}


def _styles(number: str) -> dict[str, str]:
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return {"plain": number, "spaced": " ".join(groups), "dashed": "-".join(groups)}


CARDS = {f"{brand}-{style}": text for brand, n in NUMBERS.items() for style, text in _styles(n).items()}


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client(HTTP_HOST="alpha.localhost").get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "allOf" in node and len(node["allOf"]) == 1:
        return _resolve(schema, node["allOf"][0])
    return node


def _value_for(prop: dict, card: str) -> object:
    """The card number in the shape the property takes (an integer as a number)."""
    kind = prop.get("type")
    if kind == "integer":
        return int(card.replace(" ", "").replace("-", ""))
    if kind == "array":
        return [card]
    if kind == "object":
        return {"note": card}
    return card


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "obj_x1", path)


def writable_fields(schema: dict) -> list[tuple[str, str, str, str]]:
    """(method, path, field, JSON type) for every writable field of every request body, and a
    made-up field for POSTs without a body."""
    out = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                out.append((method, path, "note", "string"))
                continue
            component = _resolve(schema, body["schema"])
            for name, prop in component.get("properties", {}).items():
                if not _resolve(schema, prop).get("readOnly"):
                    out.append((method, path, name, _resolve(schema, prop).get("type", "string")))
    return out


def _refused(response, param) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "card_number_not_allowed"
    assert error["param"] == param
    assert "Card numbers must never be sent to this API: tokenize the card" in error["message"]
    assert not find_card_number(response.content.decode())


def test_the_schema_lists_the_routes_this_test_relies_on(schema):
    fields = {(path, name) for _, path, name, _ in writable_fields(schema)}
    assert ("/api/v1/payments", "payment_method") in fields
    assert ("/api/v1/payments", "metadata") in fields
    assert ("/api/v1/customers/{customer_id}", "name") in fields
    assert ("/api/v1/vendors", "name") in fields
    assert ("/api/v1/webhook_endpoints", "url") in fields
    assert len(fields) > 60


@pytest.mark.parametrize("card", CARDS.values(), ids=CARDS.keys())
def test_a_card_number_in_any_writable_field_of_any_route_is_refused(api, schema, card):
    created = (PaymentIntent.objects.count(), Customer.objects.count(), Vendor.objects.count())
    for method, path, field, kind in writable_fields(schema):
        value = _value_for({"type": kind}, card)
        body = {field: value}
        param = {"array": f"{field}[0]", "object": f"{field}.note"}.get(kind, field)
        response = getattr(api.client, method)(
            _concrete(path),
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api.raw_key}",
        )
        assert response.status_code == 400, (method, path, field, response.content)
        _refused(response, param)
    assert (PaymentIntent.objects.count(), Customer.objects.count(), Vendor.objects.count()) == created


@pytest.mark.parametrize("card", CARDS.values(), ids=CARDS.keys())
def test_a_card_number_in_metadata_keys_the_query_the_url_or_the_idempotency_key_is_refused(api, card):
    good = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"}

    _refused(api.post("/api/v1/payments", {**good, "metadata": {card: "x"}}), "metadata")
    _refused(
        api.post("/api/v1/customers", {"metadata": {"order": "1", "note": f"card {card} exp 12/34"}}),
        "metadata.note",
    )
    _refused(
        api.post("/api/v1/payments", {**good, "splits": [{"vendor": card, "amount": 2000}]}),
        "splits[0].vendor",
    )
    _refused(api.post("/api/v1/payments", {**good, card: 1}), None)
    _refused(api.post("/api/v1/payments", good, headers={"Idempotency-Key": card}), "Idempotency-Key")
    _refused(api.get("/api/v1/customers", {"email": card}), "email")
    _refused(api.get("/api/v1/payments", {"customer": f"cus {card}"}), "customer")
    _refused(api.get("/api/v1/payments", {card: "1"}), None)
    _refused(api.get(f"/api/v1/payments/{card.replace(' ', '').replace('-', '')}"), None)
    form = api.client.post(
        "/api/v1/customers", {"name": card}, HTTP_AUTHORIZATION=f"Bearer {api.raw_key}"
    )  # multipart, as a form would send it
    _refused(form, "name")
    text = api.client.post(
        "/api/v1/customers",
        f"name={card}",
        content_type="text/plain",
        HTTP_AUTHORIZATION=f"Bearer {api.raw_key}",
    )
    _refused(text, None)
    _refused(api.post("/api/v1/customers", raw='{"name": "' + card + '", oops}'), None)


def test_numbers_that_are_not_card_numbers_still_go_through(api):
    near_miss = "4242424242424241"  # fails the Luhn check
    response = api.post(
        "/api/v1/customers",
        {
            "name": "Jenny",
            "description": f"ref {near_miss}",
            "metadata": {"order": "550e8400-e29b-41d4-a716-446655440000"},
        },
        headers={"Idempotency-Key": "4b1d3c2e-9f1a-4c7e-8d2f-123456789012"},
    )
    assert response.status_code == 201, response.content
    assert response.json()["description"] == f"ref {near_miss}"


def _dump(schemas: tuple[str, ...]) -> str:
    """Every row of every table in ``schemas``, as COPY writes it, read in the test's own
    transaction (so rows the test wrote but did not commit are in it)."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE'",
            [list(schemas)],
        )
        tables = cursor.fetchall()
        for schema_name, table in tables:
            with cursor.cursor.copy(f'COPY "{schema_name}"."{table}" TO STDOUT') as copy:
                chunks.extend(bytes(block).decode() for block in copy)
    assert len(tables) > 20
    return "".join(chunks)


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def test_after_every_attempt_no_table_log_email_or_event_holds_a_card_number(api, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    good = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    # a control: an endpoint and a payment, so outbound events and deliveries exist in the dump
    endpoint = api.post(
        "/api/v1/webhook_endpoints", {"url": "https://example.com/hooks", "enabled_events": ["*"]}
    )
    assert endpoint.status_code == 201, endpoint.content
    control = api.post("/api/v1/payments", {**good, "metadata": {"order": "6735"}}).json()
    for card in CARDS.values():
        attempts = [
            ("/api/v1/payments", {**good, "payment_method": card}),
            ("/api/v1/payments", {**good, "payment_method": "pm_card_chargeDeclined", "description": card}),
            ("/api/v1/payments", {**good, "metadata": {"note": card}}),
            ("/api/v1/payments", {**good, "metadata": {card: "x"}}),
            ("/api/v1/customers", {"name": card, "description": card, "metadata": {"phone": card}}),
            (
                "/api/v1/vendors",
                {"email": "v@example.com", "name": card, "country": "US", "default_currency": "usd"},
            ),
            ("/api/v1/products", {"name": card}),
            ("/api/v1/webhook_endpoints", {"url": f"https://example.com/{card}", "enabled_events": ["*"]}),
        ]
        for path, body in attempts:
            assert api.post(path, body).status_code == 400
        assert (
            api.post("/api/v1/customers", {"name": "ok"}, headers={"Idempotency-Key": card}).status_code
            == 400
        )

    dump = _dump(("alpha", "public"))
    assert control["id"] in dump  # the dump sees what this test wrote
    assert OutboundEvent.objects.filter(type="payment.succeeded").exists()
    logged = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    emailed = "\n".join(f"{m.subject}\n{m.body}" for m in mail.outbox)
    for number in NUMBERS.values():
        assert number not in _digits(dump)
        assert number not in _digits(logged)
        assert number not in _digits(emailed)
