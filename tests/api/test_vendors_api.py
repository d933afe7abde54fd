"""Vendors, transfers and payouts through the API, and payments with splits."""

from __future__ import annotations

import pytest
from django.core import mail

from apps.payments.gateways.connect import ConnectAccount, ConnectStatus
from apps.payments.models import PaymentIntent
from apps.vendors.models import Vendor
from apps.vendors.services import vendor_account_apply
from apps.webhooks.models import OutboundEvent
from tests.api.conftest import pay
from tests.support import run_durable_tasks as run_tasks

VENDOR = {"email": "owner@bakery.example", "name": "Rosen Bakery", "country": "US", "default_currency": "USD"}


def invite(api, **fields) -> dict:
    response = api.post("/api/v1/vendors", {**VENDOR, **fields})
    assert response.status_code == 201, response.json()
    return response.json()


def enable(vendor_id: str) -> None:
    vendor = Vendor.objects.get(pk=vendor_id)
    vendor_account_apply(
        vendor=vendor,
        account=ConnectAccount(
            id=f"acct_sim_{vendor.id[4:]}",
            status=ConnectStatus.ACTIVE,
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            currently_due=(),
            past_due=(),
            disabled_reason=None,
            country="US",
            default_currency="usd",
            email=vendor.email,
        ),
    )


def test_inviting_a_vendor_answers_with_its_onboarding_url_and_emails_it(api):
    created = invite(api, payout_schedule="daily", commission_percent_bps=750, commission_fixed={"USD": 30})

    assert created["id"].startswith("ven_") and created["object"] == "vendor"
    assert created["status"] == "invited" and created["default_currency"] == "usd"
    assert "://alpha.localhost/vendors/invite/" in created["onboarding_url"]
    assert created["commission_percent_bps"] == 750 and created["commission_fixed"] == {"usd": 30}
    (email,) = mail.outbox
    assert email.to == [VENDOR["email"]] and created["onboarding_url"] in email.body
    retrieved = api.get(f"/api/v1/vendors/{created['id']}").json()
    assert "onboarding_url" not in retrieved and retrieved["payout_schedule"] == "daily"
    listed = api.get("/api/v1/vendors", {"status": "invited"}).json()["data"]
    assert [v["id"] for v in listed] == [created["id"]]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"country": "USA"}, "country"),
        ({"country": "ZZ"}, "country"),
        ({"country": "XK"}, "country"),
        ({"default_currency": "XYZ"}, "default_currency"),
        ({"email": "not-an-email"}, "email"),
        ({"payout_schedule": "hourly"}, "payout_schedule"),
        ({"commission_percent_bps": 10_001}, "commission_percent_bps"),
        ({"commission_fixed": {"zzz": 5}}, "commission_fixed"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_vendors_are_refused_naming_the_param(api, body, param):
    response = api.post("/api/v1/vendors", {**VENDOR, **body})

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["param"] == param
    assert not Vendor.objects.exists() and not mail.outbox


def test_update_announces_vendor_updated_and_disable_refuses_new_splits(api):
    vendor = invite(api)

    updated = api.post(f"/api/v1/vendors/{vendor['id']}", {"payout_minimum": 2500, "disabled": True})

    assert updated.status_code == 200 and updated.json()["status"] == "disabled"
    event = OutboundEvent.objects.filter(type="vendor.updated", object_id=vendor["id"]).latest("created_at")
    assert event.data["payout_minimum"] == 2500 and event.data["status"] == "disabled"
    refused = api.post(
        "/api/v1/payments",
        {
            "amount": 1000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "splits": [{"vendor": vendor["id"], "amount": 1000}],
        },
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "splits[0].vendor"
    assert not PaymentIntent.objects.exists()


def test_a_split_payment_its_transfers_balance_and_payout_through_the_api(api):
    a, b = invite(api), invite(api, email="b@shop.example", name="Bob")
    enable(a["id"])
    enable(b["id"])

    payment = pay(
        api, amount=10_000, splits=[{"vendor": a["id"], "share": "0.75"}, {"vendor": b["id"], "share": "1/4"}]
    )
    run_tasks()

    assert [(s["vendor"], s["planned"], s["net"]) for s in payment["splits"]] == [
        (a["id"], 7500, 6750),
        (b["id"], 2500, 2250),
    ]
    transfers = api.get("/api/v1/transfers", {"payment": payment["id"]}).json()["data"]
    assert sorted((t["vendor"], t["amount"], t["status"]) for t in transfers) == sorted(
        [(a["id"], 6750, "paid"), (b["id"], 2250, "paid")]
    )
    assert api.get(f"/api/v1/transfers/{transfers[0]['id']}").json() == transfers[0]
    balance = api.get(f"/api/v1/vendors/{a['id']}/balance").json()
    assert balance == {
        "object": "vendor_balance",
        "vendor": a["id"],
        "available": [{"amount": 6750, "currency": "usd"}],
        "pending": [],
        "held": [],
    }

    paid_out = api.post(f"/api/v1/vendors/{a['id']}/payouts")
    run_tasks()

    assert paid_out.status_code == 201
    (payout,) = paid_out.json()["data"]
    assert api.get(f"/api/v1/payouts/{payout['id']}").json()["status"] == "paid"
    assert api.get("/api/v1/payouts", {"vendor": a["id"]}).json()["data"][0]["amount"] == 6750
    again = api.post(f"/api/v1/vendors/{a['id']}/payouts")
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_pay_out"
    types = set(OutboundEvent.objects.values_list("type", flat=True))
    assert {"transfer.created", "payout.paid", "vendor.updated", "payment.succeeded"} <= types


@pytest.mark.parametrize(
    ("splits", "param"),
    [
        ([{"vendor": "ven_unknown", "amount": 2000}], "splits[0].vendor"),
        ([{"amount": 2000}], "splits[0]"),
        ([{"vendor": "ven_unknown", "share": 1}], "splits[0].share"),
        ([{"vendor": "ven_unknown", "share": "1", "note": "x"}], "splits[0].note"),
        ("nope", "splits"),
        ([], "splits"),
    ],
)
def test_a_bad_split_plan_is_a_400_and_nothing_is_charged(api, splits, param):
    response = api.post(
        "/api/v1/payments",
        {
            "amount": 2000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "splits": splits,
        },
    )

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["param"].startswith(param)
    assert not PaymentIntent.objects.exists()


def test_on_the_public_host_the_onboarding_url_is_on_the_marketplace_host(api):
    from tests.api.conftest import ApiClient

    public = ApiClient("localhost", api.raw_key)

    created = public.post("/api/v1/vendors", VENDOR)

    assert created.status_code == 201, created.json()
    assert "://alpha.localhost" in created.json()["onboarding_url"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/v1/vendors", {**VENDOR, "payout_minimum": 2**63}, "payout_minimum"),
        ("/api/v1/vendors", {**VENDOR, "commission_fixed": {"usd": 2**63}}, "commission_fixed"),
        ("/api/v1/vendors", {**VENDOR, "commission_fixed": {"USD": 1, "usd": 2}}, "commission_fixed"),
        ("/api/v1/vendors", {**VENDOR, "metadata": {"a\u0000": "b"}}, "metadata"),
        ("/api/v1/webhook_endpoints", {"url": "https://[::1", "enabled_events": ["*"]}, "url"),
        ("/api/v1/webhook_endpoints", {"url": "https://exa mple.com", "enabled_events": ["*"]}, "url"),
        (
            "/api/v1/tax_rates",
            {"display_name": "VAT", "jurisdiction": "DE", "percentage": "NaN"},
            "percentage",
        ),
        (
            "/api/v1/tax_rates",
            {"display_name": "VAT", "jurisdiction": "DE", "percentage": "sNaN"},
            "percentage",
        ),
        ("/api/v1/prices", {"amounts": {"usd": 10**30}, "interval": "month"}, "amounts"),
        ("/api/v1/prices", {"amounts": {"USD": 1, "usd": 2}, "interval": "month"}, "amounts"),
    ],
)
def test_odd_input_found_in_review_is_a_400(api, path, body, param):
    if path == "/api/v1/prices":
        body = {**body, "product": api.post("/api/v1/products", {"name": "P"}).json()["id"]}

    response = api.post(path, body)

    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["error"]["param"].startswith(param)


def test_a_split_share_is_a_string_never_a_number(api):
    vendor = invite(api)
    body = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}

    number = api.post("/api/v1/payments", {**body, "splits": [{"vendor": vendor["id"], "share": 1}]})
    text = api.post("/api/v1/payments", {**body, "splits": [{"vendor": vendor["id"], "share": "1"}]})

    assert number.status_code == 400, number.json()
    assert number.json()["error"] == {
        "type": "invalid_request_error",
        "code": "parameter_invalid",
        "message": "Invalid splits[0].share: must be a string, got an integer.",
        "param": "splits[0].share",
    }
    assert text.status_code == 201, text.json()
    assert [line["vendor"] for line in text.json()["splits"]] == [vendor["id"]]


def test_a_vendor_country_is_stored_upper_case(api):
    assert invite(api, country="de")["country"] == "DE"
