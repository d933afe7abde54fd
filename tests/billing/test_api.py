"""The billing API: products, prices, subscriptions (with tax, a vendor split and proration),
invoices, recovery analytics; the API's conventions (errors, lists, idempotency)."""

from __future__ import annotations

from datetime import timedelta

from apps.billing.models import Invoice
from apps.ledger.models import LedgerEvent
from apps.vendors.services import vendor_account_apply, vendor_create
from tests.billing.conftest import T0, run
from tests.vendors.test_funds import account


def make_price(api, **overrides):
    product = api.post("/api/v1/products", {"name": "Team"}).json()
    body = {"product": product["id"], "amounts": {"USD": 3000, "eur": 2800}, "interval": "month", **overrides}
    response = api.post("/api/v1/prices", body)
    assert response.status_code == 201, response.json()
    return response.json()


def make_customer(api):
    return api.post("/api/v1/customers", {"email": "sam@example.com"}).json()["id"]


def test_subscribe_with_tax_and_a_vendor_then_change_plan_with_proration(api, billing, clock):
    from apps.vendors.models import CommissionPolicy

    CommissionPolicy.objects.update(percent_bps=1000, fixed={}, fee_policy="platform")
    ven = vendor_create(email="studio@shop.test", name="Studio", country="DE", default_currency="eur")
    ven = vendor_account_apply(vendor=ven, account=account(ven, enabled=True))
    rate = api.post(
        "/api/v1/tax_rates",
        {"display_name": "VAT", "jurisdiction": "de", "percentage": "19", "inclusive": True},
    ).json()
    price = make_price(api)
    assert price["amounts"] == {"usd": 3000, "eur": 2800}
    body = {
        "customer": make_customer(api),
        "price": price["id"],
        "currency": "EUR",
        "payment_method": "pm_card_visa",
        "tax_jurisdiction": "DE",
        "vendor": ven.id,
    }
    created = api.post("/api/v1/subscriptions", body, headers={"Idempotency-Key": "sub-1"})
    assert created.status_code == 201, created.json()
    sub = created.json()
    assert (sub["status"], sub["currency"], sub["vendor"]) == ("active", "eur", ven.id)
    again = api.post("/api/v1/subscriptions", body, headers={"Idempotency-Key": "sub-1"})
    assert again.json()["id"] == sub["id"]
    inv = api.get(f"/api/v1/invoices/{sub['latest_invoice']}").json()
    assert (inv["status"], inv["subtotal"], inv["tax"], inv["total"], inv["amount_paid"]) == (
        "paid",
        2800,
        447,  # 2800 * 19/119 = 447.06
        2800,
        2800,
    )
    assert [(line["kind"], line["amount"], line["tax_rate"]) for line in inv["lines"]] == [
        ("subscription", 2800, None),
        ("tax", 447, rate["id"]),
    ]
    assert inv["number"].startswith("INV-")
    # the payment split to the vendor: its ledger capture names the vendor's part
    capture = LedgerEvent.objects.get(type="ChargeCaptured", stream=inv["payment"])
    accounts = {a["account"]: a["amount"] for a in capture.payload["allocations"]}
    assert accounts == {f"vendor_pending:{ven.id}": 2520, "platform_revenue": 280}
    # when the plan doubles halfway through February
    clock.to(T0 + timedelta(days=14))
    bigger = make_price(api, amounts={"eur": 5600})
    changed = api.post(f"/api/v1/subscriptions/{sub['id']}", {"price": bigger["id"]})
    assert changed.status_code == 200, changed.json()
    clock.to(T0 + timedelta(days=28, hours=1))
    run()
    # then the next invoice has the new price and the two proration lines (14 of 28 days left)
    nxt = Invoice.objects.filter(subscription_id=sub["id"]).order_by("-period_start").first()
    lines = [(line.kind, line.amount) for line in nxt.lines.order_by("id")]
    assert lines == [("subscription", 5600), ("proration", -1400), ("proration", 2800), ("tax", 1118)]
    assert (nxt.total, nxt.status) == (7000, "paid")


def test_errors_and_lists_follow_the_api_conventions(api, billing):
    price = make_price(api)
    bad = api.post("/api/v1/prices", {"product": "prod_x", "amounts": {"usd": 1}, "interval": "month"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "product")
    bad = api.post(
        "/api/v1/prices", {"product": price["product"], "amounts": {"xxx": 1}, "interval": "month"}
    )
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "amounts.xxx")
    body = {
        "customer": make_customer(api),
        "price": price["id"],
        "currency": "gbp",
        "payment_method": "pm_card_visa",
    }
    bad = api.post("/api/v1/subscriptions", body)
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "currency")
    sub = api.post("/api/v1/subscriptions", {**body, "currency": "usd", "trial_days": 7}).json()
    assert sub["status"] == "trialing"
    assert sub["latest_invoice"] is None
    assert api.get("/api/v1/subscriptions/sub_nope").status_code == 404
    listed = api.get("/api/v1/subscriptions", {"status": "trialing", "limit": 1}).json()
    assert [s["id"] for s in listed["data"]] == [sub["id"]]
    assert api.get("/api/v1/subscriptions", {"status": "nope"}).status_code == 400
    paused = api.post(f"/api/v1/subscriptions/{sub['id']}/pause").json()
    assert paused["status"] == "paused"
    resumed = api.post(f"/api/v1/subscriptions/{sub['id']}/resume").json()
    assert resumed["status"] == "active"
    canceled = api.post(f"/api/v1/subscriptions/{sub['id']}/cancel", {"at_period_end": True}).json()
    assert (canceled["status"], canceled["cancel_at_period_end"]) == ("active", True)
    canceled = api.post(f"/api/v1/subscriptions/{sub['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    recovery = api.get("/api/v1/billing/recovery").json()
    assert recovery["object"] == "billing_recovery"
    assert set(recovery) >= {"total", "by_month", "by_decline_code", "by_gateway"}
    assert api.get("/api/v1/schema/").status_code == 200
