"""The customer's invoice page and card-update page; the operators' admin and recovery chart."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model

from apps.billing.models import Invoice
from apps.billing.notifications import card_update_token
from tests.billing.conftest import monthly_price, run, subscribe


@pytest.fixture
def operator_client(billing, host_client):
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))
    return client


def test_invoice_page_and_card_update_recover_a_declined_invoice(billing, host_client):
    sub = subscribe(monthly_price(), card="pm_card_visa_chargeDeclinedLostCard")
    inv = Invoice.objects.get(subscription=sub)
    client = host_client("alpha.localhost")
    page = client.get(f"/billing/invoices/{inv.access_token}")
    assert page.status_code == 200
    assert inv.number in page.content.decode()
    assert "20.00 USD" in page.content.decode()
    assert client.get("/billing/invoices/nope").status_code == 404
    assert client.get("/billing/card/forged").status_code == 404
    url = f"/billing/card/{card_update_token(sub.id)}"
    assert client.get(url).status_code == 200
    assert client.post(url, {"payment_method": ""}).status_code == 400
    assert client.post(url, {"payment_method": "x" * 300}).status_code == 400
    assert client.post(url, {"payment_method": "pm\x00card"}).status_code == 400
    assert client.get("/billing/invoices/%00").status_code == 404
    assert client.post(f"/billing/invoices/{inv.access_token}").status_code == 405
    saved = client.post(url, {"payment_method": "pm_card_visa"})
    assert saved.status_code == 200
    run()
    inv.refresh_from_db()
    assert inv.status == "paid"


def test_admin_lists_billing_and_draws_the_recovery_chart(operator_client):
    subscribe(monthly_price(), card="pm_card_chargeDeclinedInsufficientFunds")
    for url in (
        "/admin/billing/product/",
        "/admin/billing/price/",
        "/admin/billing/subscription/",
        "/admin/billing/invoice/",
        "/admin/billing/taxrate/",
        "/admin/billing/dunningpolicy/",
    ):
        assert operator_client.get(url).status_code == 200, url
    inv = Invoice.objects.order_by("-created_at").first()
    assert operator_client.get(f"/admin/billing/invoice/{quote(inv.pk)}/change/").status_code == 200
    chart = operator_client.get("/admin/billing/invoice/recovery/")
    assert chart.status_code == 200
    body = chart.content.decode()
    assert "<svg" in body
    assert "insufficient_funds" in body


@pytest.mark.parametrize("card", ["4242424242424242", "5555 5555 5555 4444", "3782-822463-10005"])
def test_a_card_number_on_the_card_update_page_is_a_form_error_and_nothing_is_stored(
    billing, host_client, card
):
    sub = subscribe(monthly_price(), card="pm_card_visa")
    client = host_client("alpha.localhost")

    response = client.post(f"/billing/card/{card_update_token(sub.id)}", {"payment_method": card})

    assert response.status_code == 400
    assert "looks like a card number" in response.content.decode()
    sub.refresh_from_db()
    assert sub.payment_method == "pm_card_visa"
