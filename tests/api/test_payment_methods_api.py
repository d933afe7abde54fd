"""The payment methods API: save, retrieve, list, attach, detach; credentials masked; payments
with one of our methods, routing skips shown on the payment."""

from __future__ import annotations

from apps.api.errors import payment_error
from apps.payments.models import PaymentMethodCredential
from apps.payments.services import PaymentError
from tests.api.conftest import pay
from tests.payments.conftest import configure


def customer(api, email="jenny@example.com") -> str:
    return api.post("/api/v1/customers", {"email": email}).json()["id"]


def save(api, status=201, **body):
    response = api.post("/api/v1/payment_methods", {"gateway": "primary", "token": "pm_card_visa", **body})
    assert response.status_code == status, response.json()
    return response.json()


def test_save_retrieve_and_credentials_masked(api):
    cus = customer(api)
    body = save(api, customer=cus, metadata={"label": "work"})

    assert body["id"].startswith("paym_") and body["object"] == "payment_method"
    assert body["customer"] == cus and body["type"] == "card" and body["metadata"] == {"label": "work"}
    card = body["card"]
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == ("visa", "4242", 12, 2034)
    assert (card["country"], card["funding"]) == ("US", "credit") and card["fingerprint"]
    reference = PaymentMethodCredential.objects.get(method_id=body["id"]).credential["reference"]
    [gateway] = body["gateways"]
    assert gateway["gateway"] == "primary" and gateway["reference"] == "..." + reference[-4:]
    fetched = api.get(f"/api/v1/payment_methods/{body['id']}")
    assert fetched.status_code == 200 and fetched.json() == body
    assert reference not in fetched.content.decode()


def test_same_card_for_the_same_customer_is_recognised(api):
    cus = customer(api)
    first = save(api, customer=cus)

    again = save(api, status=200, customer=cus, gateway="secondary")

    assert again["id"] == first["id"]
    assert [g["gateway"] for g in again["gateways"]] == ["primary", "secondary"]
    listed = api.get(f"/api/v1/customers/{cus}/payment_methods").json()
    assert [m["id"] for m in listed["data"]] == [first["id"]] and listed["has_more"] is False
    assert [m["id"] for m in api.get("/api/v1/payment_methods", {"customer": cus}).json()["data"]] == [
        first["id"]
    ]


def test_attach_detach(api):
    cus, other = customer(api), customer(api, "bob@example.com")
    method = save(api)

    attached = api.post(f"/api/v1/payment_methods/{method['id']}/attach", {"customer": cus})
    assert attached.status_code == 200 and attached.json()["customer"] == cus
    taken = api.post(f"/api/v1/payment_methods/{method['id']}/attach", {"customer": other})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "payment_method_unexpected_state"
    detached = api.post(f"/api/v1/payment_methods/{method['id']}/detach", headers={"Idempotency-Key": "d-1"})
    assert detached.status_code == 200 and detached.json()["customer"] is None
    assert api.get(f"/api/v1/customers/{cus}/payment_methods").json()["data"] == []


def test_input_is_strict_and_errors_are_json(api):
    unknown = api.post("/api/v1/payment_methods", {"gateway": "primary", "token": "pm_card_visa", "cvc": "1"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "parameter_unknown"
    bad_token = api.post("/api/v1/payment_methods", {"gateway": "primary", "token": "pm_nope"})
    assert bad_token.status_code == 400
    assert (bad_token.json()["error"]["code"], bad_token.json()["error"]["param"]) == (
        "resource_missing",
        "token",
    )
    bad_gateway = api.post("/api/v1/payment_methods", {"gateway": "nowhere", "token": "pm_card_visa"})
    assert bad_gateway.status_code == 400 and bad_gateway.json()["error"]["param"] == "gateway"
    pan = api.post("/api/v1/payment_methods", {"gateway": "primary", "token": "4242 4242 4242 4242"})
    assert pan.status_code == 400 and pan.json()["error"]["code"] == "card_number_not_allowed"
    assert api.get("/api/v1/payment_methods/paym_nope").status_code == 404
    assert api.get("/api/v1/customers/cus_nope/payment_methods").status_code == 404
    no_customer = api.post(
        "/api/v1/payment_methods", {"gateway": "primary", "token": "pm_card_visa", "customer": "cus_x"}
    )
    assert no_customer.status_code == 400 and no_customer.json()["error"]["param"] == "customer"


def test_idempotency_key_replays_the_first_answer(api):
    first = api.post(
        "/api/v1/payment_methods",
        {"gateway": "primary", "token": "pm_card_visa"},
        headers={"Idempotency-Key": "pm-1"},
    )
    again = api.post(
        "/api/v1/payment_methods",
        {"gateway": "primary", "token": "pm_card_visa"},
        headers={"Idempotency-Key": "pm-1"},
    )
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]


def test_payment_with_a_method_saved_at_secondary_shows_the_skip(api):
    method = save(api, gateway="secondary")

    body = pay(api, payment_method=method["id"])

    assert body["status"] == "succeeded" and body["payment_method"] == method["id"]
    assert body["routing"] == {
        "skipped": [{"gateway": "primary", "reason": "no credential and no vault route"}],
        "via": {},
    }


def test_payment_no_gateway_can_charge_fails_with_its_reason(api):
    method = save(api)
    configure("primary", down=True)

    body = pay(api, payment_method=method["id"])

    assert body["status"] == "failed"
    assert body["last_error"]["code"] == "payment_method_unreachable"
    assert "secondary: no credential and no vault route" in body["last_error"]["message"]
    assert {"gateway": "secondary", "reason": "no credential and no vault route"} in body["routing"][
        "skipped"
    ]


def test_test_tokens_keep_working(api):
    body = pay(api)
    assert body["status"] == "succeeded" and body["routing"] == {"skipped": [], "via": {}}


def test_confirm_with_a_saved_method(api):
    method = save(api, gateway="secondary", token="pm_card_amex")
    created = pay(api, confirm=False)

    confirmed = api.post(f"/api/v1/payments/{created['id']}/confirm", {"payment_method": method["id"]})

    assert confirmed.status_code == 200, confirmed.json()
    body = confirmed.json()
    assert (body["status"], body["payment_method"]) == ("succeeded", method["id"])
    expanded = api.get(f"/api/v1/payments/{created['id']}", {"expand[]": "attempts"}).json()
    assert [a["gateway"] for a in expanded["attempts"]] == ["secondary"]
    missing = api.post(
        f"/api/v1/payments/{pay(api, confirm=False)['id']}/confirm", {"payment_method": "paym_x"}
    )
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "resource_missing"


def test_a_gateway_that_is_down_cannot_save(api):
    configure("primary", down=True)

    response = api.post("/api/v1/payment_methods", {"gateway": "primary", "token": "pm_card_visa"})

    assert response.status_code == 422
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("gateway_error", None)


def test_a_customer_that_does_not_exist_is_a_400_naming_the_parameter(api):
    method = save(api)
    for path, body in (
        (f"/api/v1/payment_methods/{method['id']}/attach", {"customer": "cus_missing"}),
        (
            "/api/v1/payments",
            {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "customer": "cus_missing"},
        ),
    ):
        response = api.post(path, body)
        assert response.status_code == 400, response.json()
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("resource_missing", "customer")
        assert error["message"] == "No such customer: 'cus_missing'"


def test_a_customers_saved_method_needs_that_customer_named(api):
    # given a method saved for jenny
    jenny = customer(api)
    method = save(api, customer=jenny)
    body = {"amount": 100, "currency": "usd", "payment_method": method["id"], "confirm": True}

    # when it is charged without a customer, or for bob
    anonymous = api.post("/api/v1/payments", body)
    other = api.post("/api/v1/payments", {**body, "customer": customer(api, "bob@example.com")})
    confirmed = api.post(
        f"/api/v1/payments/{pay(api, confirm=False)['id']}/confirm", {"payment_method": method["id"]}
    )

    # then each is refused before anything is charged; for jenny it succeeds
    assert anonymous.status_code == 400, anonymous.json()
    assert (anonymous.json()["error"]["code"], anonymous.json()["error"]["param"]) == (
        "parameter_missing",
        "customer",
    )
    assert "name that customer" in anonymous.json()["error"]["message"]
    assert (other.status_code, other.json()["error"]["code"], other.json()["error"]["param"]) == (
        400,
        "payment_method_customer_mismatch",
        "payment_method",
    )
    assert (confirmed.status_code, confirmed.json()["error"]["param"]) == (400, "customer")
    assert pay(api, payment_method=method["id"], customer=jenny)["status"] == "succeeded"
    assert api.get("/api/v1/payments", {"limit": 100}).json()["data"][0]["customer"] == jenny


def test_a_payment_charged_through_a_vault_shows_the_route_per_attempt(api):
    # given a card saved only at primary, whose vault reaches secondary, and primary down
    method = save(api)
    configure("primary", vault=True, down=True)

    body = pay(api, payment_method=method["id"])

    # then the attempt at secondary shows how it was reached, nothing secret
    assert body["status"] == "succeeded"
    charged = api.get(f"/api/v1/payments/{body['id']}", {"expand[]": "attempts"}).json()["attempts"][-1]
    assert charged["gateway"] == "secondary"
    assert body["routing"]["via"] == {
        charged["id"]: {"via": "vault", "vault": "simulator", "from": "primary"}
    }
    assert "simtok" not in str(body["routing"])


# --------------------------------------------------------------------------- saving while paying


def test_a_payment_saves_the_card_for_its_customer_and_a_second_finds_it(api):
    cus = customer(api)

    first = pay(api, customer=cus, setup_future_usage="off_session")
    second = pay(api, customer=cus, setup_future_usage="on_session")

    assert first["status"] == "succeeded" and first["setup_future_usage"] == "off_session"
    assert first["saved_payment_method"].startswith("paym_")
    assert second["setup_future_usage"] == "on_session"
    assert second["saved_payment_method"] == first["saved_payment_method"]  # same card, same method
    method = api.get(f"/api/v1/payment_methods/{first['saved_payment_method']}").json()
    assert method["customer"] == cus and method["card"]["last4"] == "4242"
    assert [g["gateway"] for g in method["gateways"]] == ["primary"]
    assert method["has_network_transaction_id"] is True
    assert api.get(f"/api/v1/payments/{first['id']}").json()["saved_payment_method"] == method["id"]
    # later charged with the saved method, off the customer's session it needs no card again
    later = pay(api, customer=cus, payment_method=method["id"])
    assert later["status"] == "succeeded" and later["saved_payment_method"] is None


def test_a_payment_without_saving_shows_null_fields(api):
    body = pay(api)
    assert body["setup_future_usage"] is None and body["saved_payment_method"] is None


def test_setup_future_usage_is_validated(api):
    cus = customer(api)
    base = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}

    unknown = api.post("/api/v1/payments", {**base, "customer": cus, "setup_future_usage": "forever"})
    no_customer = api.post("/api/v1/payments", {**base, "setup_future_usage": "off_session"})

    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "setup_future_usage"
    assert no_customer.status_code == 400
    assert no_customer.json()["error"]["param"] == "setup_future_usage"
    assert api.get("/api/v1/payments").json()["data"] == []  # nothing created


def test_the_schema_declares_the_saving_fields(api):
    spec = api.client.get("/api/v1/schema/", {"format": "json"}).json()
    schemas = spec["components"]["schemas"]

    def named(ref: dict) -> dict:
        return schemas[ref["$ref"].split("/")[-1]]

    request = spec["paths"]["/api/v1/payments"]["post"]["requestBody"]["content"]["application/json"]
    usage = named(request["schema"])["properties"]["setup_future_usage"]
    assert set(named(usage["allOf"][0])["enum"]) == {"off_session", "on_session"}
    assert {"setup_future_usage", "saved_payment_method"} <= set(schemas["PaymentOut"]["properties"])
    assert schemas["PaymentMethodOut"]["properties"]["has_network_transaction_id"]["type"] == "boolean"
    assert "402" in spec["paths"]["/api/v1/payment_methods"]["post"]["responses"]


def test_an_issuer_refusing_to_save_a_card_is_a_402_card_error():
    for code in ("card_declined", "authentication_required"):
        error = payment_error(PaymentError("the card was declined", code=code, param=None))
        assert (error.status_code, error.type, error.error_code) == (402, "card_error", code)
    assert (
        payment_error(PaymentError("no such token", code="resource_missing", param="token")).status_code
        == 400
    )


def test_a_saved_card_is_charged_off_session_with_its_network_transaction_id(api):
    from apps.payments.models import PaymentMethod, SimulatorCharge

    # given a card saved by a customer-initiated payment
    cus = customer(api)
    saved = pay(api, customer=cus, setup_future_usage="off_session")["saved_payment_method"]
    network_id = PaymentMethod.objects.get(pk=saved).network_transaction_id

    # when the marketplace charges it later without the customer
    later = pay(api, customer=cus, payment_method=saved, off_session=True)
    one_off = api.post(
        "/api/v1/payments",
        {"amount": 500, "currency": "usd", "payment_method": "pm_card_visa", "off_session": True},
    )
    no_customer = api.post(
        "/api/v1/payments", {"amount": 500, "currency": "usd", "payment_method": saved, "off_session": True}
    )

    # then it is a merchant-initiated charge passing the first charge's network transaction id
    assert later["status"] == "succeeded" and later["off_session"] is True
    charge = SimulatorCharge.objects.get(attempt_id=f"{later['id']}_1")
    assert charge.off_session and network_id and charge.network_transaction_id_passed == network_id
    # and a token without a customer, or a saved method without its customer, cannot be charged so
    assert (one_off.status_code, one_off.json()["error"]["param"]) == (400, "off_session")
    assert no_customer.status_code == 400
