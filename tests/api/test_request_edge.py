"""The API's edge (apps/api/middleware.py): a body it cannot read whole is refused, never read as
empty; every error is one shape, serialised one way, with a Request-Id; no Python in messages."""

from __future__ import annotations

import json

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.customers.models import Customer

BODY = '{"email":"chunked@example.com","name":"Jenny"}'


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert "Request-Id" in response
    # One serialiser for every error: DRF's compact JSON.
    assert response.content == json.dumps(response.json(), separators=(",", ":"), ensure_ascii=False).encode()
    return response.json()["error"]


def test_a_chunked_body_is_411_and_nothing_is_created(api):
    # What a WSGI server hands Django for `curl -H "Transfer-Encoding: chunked"`: no Content-Length.
    response = api.client.generic(
        "POST",
        "/api/v1/customers",
        "",
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **api._headers(None),
    )

    error = _error(response, 411)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "length_required",
        None,
    )
    assert Customer.objects.count() == 0


def test_a_transfer_encoding_with_a_length_is_read(api):
    response = api.client.post(
        "/api/v1/customers",
        BODY,
        content_type="application/json",
        HTTP_TRANSFER_ENCODING="identity",
        **api._headers(None),
    )

    assert response.status_code == 201, response.content
    assert Customer.objects.get().email == "chunked@example.com"


def test_a_file_upload_is_400_naming_its_field_and_nothing_is_created(api):
    response = api.client.post(
        "/api/v1/customers",
        {"email": "f@example.com", "name": SimpleUploadedFile("empty", b"")},
        **api._headers(None),
    )

    error = _error(response, 400)
    assert (error["code"], error["param"]) == ("parameter_invalid", "name")
    assert error["message"] == "name was sent as a file; this API takes no file uploads."
    assert Customer.objects.count() == 0


def test_malformed_and_too_deep_json_share_one_code_in_plain_words(api):
    bodies = [
        "{not json",
        "[" * 40 + "]" * 40,
        '{"amount": ' + "9" * 5000 + "}",
        '{"amount": NaN}',
        b"\xff\xfe{",
    ]
    for raw in bodies:
        error = _error(api.post("/api/v1/payments", raw=raw), 400)

        assert (error["code"], error["param"]) == ("invalid_json", None), raw
        assert "sys." not in error["message"] and "int_max_str_digits" not in error["message"]
    huge = _error(api.post("/api/v1/payments", raw='{"amount": ' + "9" * 5000 + "}"), 400)
    assert huge["message"] == "The body is not valid JSON: a number in it is too large."


def test_card_number_routing_and_validation_errors_are_serialised_alike(api):
    _error(api.post("/api/v1/customers", {"name": "4242424242424242"}), 400)
    _error(api.get("/api/v1/nope"), 404)
    _error(api.post("/api/v1/customers", {"bogus_param": "x"}), 400)
    _error(
        api.client.put("/api/v1/customers", "{}", content_type="application/json", **api._headers(None)), 405
    )


def test_an_unknown_hosts_404_carries_a_request_id(db, host_client):
    api = host_client("evil.localhost").get("/api/v1/account")
    page = host_client("evil.localhost").get("/admin/")

    assert _error(api, 404)["code"] == "unknown_host"
    assert page.status_code == 404 and page["Request-Id"].startswith("req_")
