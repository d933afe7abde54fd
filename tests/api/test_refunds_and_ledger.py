from __future__ import annotations

from tests.api.conftest import pay


def _balances(api, currency: str) -> dict[str, int]:
    body = api.get("/api/v1/balance", {"currency": currency}).json()
    return {row["account"]: row["balance"] for row in body["accounts"]}


def test_refund_partly_then_the_rest_then_nothing_left(api):
    payment = pay(api)

    first = api.post(
        f"/api/v1/payments/{payment['id']}/refunds", {"amount": 500, "reason": "requested_by_customer"}
    )
    rest = api.post(f"/api/v1/payments/{payment['id']}/refunds")
    none_left = api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 1})

    assert first.status_code == 201
    assert first.json()["id"].startswith("re_")
    assert {k: first.json()[k] for k in ("object", "amount", "currency", "payment", "status", "reason")} == {
        "object": "refund",
        "amount": 500,
        "currency": "usd",
        "payment": payment["id"],
        "status": "succeeded",
        "reason": "requested_by_customer",
    }
    assert rest.status_code == 201 and rest.json()["amount"] == 1500
    assert none_left.status_code == 400 and none_left.json()["error"]["param"] == "amount"
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["amount_refunded"] == 2000


def test_refund_of_an_unpaid_payment_is_409(api):
    payment = pay(api, confirm=False)

    response = api.post(f"/api/v1/payments/{payment['id']}/refunds")

    assert response.status_code == 409


def test_refunds_list_and_retrieve(api):
    payment = pay(api)
    refund = api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 300}).json()

    listed = api.get("/api/v1/refunds", {"payment": payment["id"]}).json()
    retrieved = api.get(f"/api/v1/refunds/{refund['id']}")

    assert [r["id"] for r in listed["data"]] == [refund["id"]]
    assert retrieved.status_code == 200 and retrieved.json() == refund
    assert api.get("/api/v1/refunds/re_nope").status_code == 404


def test_balance_moves_by_the_payment_and_the_refund(api):
    before = _balances(api, "SEK")
    payment = pay(api, currency="sek", amount=10_000)
    api.post(f"/api/v1/payments/{payment['id']}/refunds", {"amount": 2_500})

    after = _balances(api, "sek")

    assert after["platform_revenue"] - before.get("platform_revenue", 0) == 10_000
    assert after["refunds"] - before.get("refunds", 0) == 2_500
    body = api.get("/api/v1/balance").json()
    assert body["object"] == "balance"
    assert {row["currency"] for row in body["accounts"]} >= {"sek"}
    assert api.get("/api/v1/balance", {"currency": "zzz"}).status_code == 400


def test_ledger_transactions_show_the_capture_entries(api):
    pay(api, amount=999, currency="NOK")
    pay(api, amount=1234, currency="NOK")

    body = api.get("/api/v1/ledger/transactions", {"limit": 1}).json()

    txn = body["data"][0]
    assert txn["id"].startswith("txn_") and txn["event"].startswith("evt_")
    assert txn["event_type"] == "ChargeCaptured"
    lines = [(e["account"], e["side"], e["amount"], e["currency"]) for e in txn["entries"]]
    assert ("processor_clearing:primary", "debit", 1234, "nok") in lines
    assert ("platform_revenue", "credit", 1234, "nok") in lines
    assert body["has_more"] is True
    older = api.get("/api/v1/ledger/transactions", {"limit": 1, "starting_after": txn["id"]}).json()
    assert older["data"][0]["event_type"] == "ChargeCaptured"
    assert ("platform_revenue", "credit", 999, "nok") in [
        (e["account"], e["side"], e["amount"], e["currency"]) for e in older["data"][0]["entries"]
    ]


def test_ledger_events_list_filter_and_retrieve(api):
    payment = pay(api)

    created = api.get(
        "/api/v1/ledger/events", {"type": "PaymentIntentCreated", "stream": payment["id"]}
    ).json()["data"]
    retrieved = api.get(f"/api/v1/ledger/events/{created[0]['id']}")

    assert len(created) == 1
    assert created[0]["id"].startswith("evt_") and created[0]["object"] == "ledger_event"
    assert created[0]["data"]["payment"] == payment["id"] and created[0]["stream"] == payment["id"]
    assert retrieved.status_code == 200 and retrieved.json() == created[0]
    assert api.get("/api/v1/ledger/events/evt_nope").status_code == 404


def test_a_refund_reason_outside_the_documented_ones_is_refused_and_nothing_is_refunded(api):
    payment = pay(api)

    response = api.post(f"/api/v1/payments/{payment['id']}/refunds", {"reason": "bogus"})

    assert response.status_code == 400
    assert (response.json()["error"]["code"], response.json()["error"]["param"]) == (
        "parameter_invalid",
        "reason",
    )
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["amount_refunded"] == 0
    assert api.get("/api/v1/refunds", {"payment": payment["id"]}).json()["data"] == []
