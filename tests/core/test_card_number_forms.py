"""Card numbers are refused in every POSTed form outside the API: the operators' admin on a
marketplace's host (the form again, the error on the field, the card number not echoed) and the
platform owner's admin on the public host (vendor and billing pages: tests/vendors/test_pages.py,
tests/billing/test_pages.py); any other form post gets the middleware's error page. Nothing stored."""

from __future__ import annotations

import logging
import re

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.db import connection

from apps.core.forms import CARD_NUMBER_FIELD_ERROR
from apps.customers.models import Customer
from apps.tenants.models import Marketplace

CARDS = ["4242424242424242", "5555 5555 5555 4444", "3782-822463-10005"]


def _refused(response) -> None:
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was saved" in page
    assert "looks like a card number" in page
    assert "Stripe Elements" in page


def _field_error(response, card: str) -> str:
    """The admin's form again (200), the card-number error on the field, the card not echoed."""
    assert response.status_code == 200
    page = response.content.decode()
    assert CARD_NUMBER_FIELD_ERROR in page
    assert "Nothing was saved" not in page
    assert card not in page and card.replace(" ", "").replace("-", "") not in page
    return page


def _digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def _schema_rows(schema: str) -> str:
    chunks: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [schema],
        )
        for (table,) in cursor.fetchall():
            with cursor.cursor.copy(f'COPY "{schema}"."{table}" TO STDOUT') as copy:
                chunks.extend(bytes(block).decode() for block in copy)
    return "".join(chunks)


@pytest.fixture
def operator_client(in_tenant_a, host_client):
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))
    return client


@pytest.mark.parametrize("card", CARDS)
def test_the_marketplace_admin_shows_a_card_number_as_an_error_on_its_field(operator_client, card, caplog):
    caplog.set_level(logging.INFO)
    customer = Customer.objects.create(id="cus_formtest1", name="Jenny", email="j@example.com")

    added = operator_client.post("/admin/customers/customer/add/", {"name": card, "email": "a@example.com"})
    changed = operator_client.post(
        f"/admin/customers/customer/{quote(customer.pk)}/change/",
        {"name": "Jenny", "email": "j@example.com", "description": f"paid with {card}"},
    )

    assert 'value="a@example.com"' in _field_error(added, card)
    assert 'value="Jenny"' in _field_error(changed, card)
    assert list(Customer.objects.values_list("name", "description")) == [("Jenny", "")]
    digits = _digits(card)
    assert digits not in _digits(_schema_rows("alpha"))
    assert digits not in _digits("\n".join(r.getMessage() for r in caplog.records))


def test_the_admin_still_saves_ordinary_values(operator_client):
    response = operator_client.post(
        "/admin/customers/customer/add/",
        {"name": "Jenny", "email": "a@example.com", "description": "+1 415 555 2671"},
    )

    assert response.status_code == 302
    assert Customer.objects.get().description == "+1 415 555 2671"


@pytest.mark.parametrize("card", CARDS)
def test_the_platform_admin_refuses_a_card_number_in_any_field(db, host_client, card):
    user = get_user_model().objects.create_superuser(
        username="owner", email="o@p.test", password="pw-12345678"
    )
    client = host_client("localhost")
    client.force_login(user)
    before = Marketplace.objects.count()

    response = client.post(
        "/admin/tenants/marketplace/add/", {"name": f"Shop {card}", "owner_email": "x@example.com"}
    )

    _refused(response)
    assert Marketplace.objects.count() == before
    assert _digits(card) not in _digits(_schema_rows("public"))


def test_a_card_number_in_a_field_name_is_not_repeated_on_the_page(operator_client):
    response = operator_client.post("/admin/customers/customer/add/", {"4242424242424242": "x"})

    _refused(response)
    assert "4242" not in response.content.decode()


def test_an_admin_post_that_is_no_form_is_refused_whole(operator_client):
    Customer.objects.create(id="cus_formtest2", name="Jenny", email="j@example.com")

    response = operator_client.post(
        "/admin/customers/customer/",
        {
            "action": "delete_selected",
            "_selected_action": ["cus_formtest2"],
            "search_note": "4242424242424242",
        },
    )

    _refused(response)
    assert "The field “Search note”" in response.content.decode()
    assert Customer.objects.count() == 1


def test_a_password_field_is_not_looked_at(db, host_client):
    get_user_model().objects.create_superuser(username="owner", email="o@p.test", password="4242424242424242")

    response = host_client("localhost").post(
        "/admin/login/?next=/admin/", {"username": "owner", "password": "4242424242424242"}
    )

    assert response.status_code == 302
