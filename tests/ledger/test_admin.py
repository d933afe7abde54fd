from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.ledger.models import Account
from apps.ledger.services import ledger_post_manual


@pytest.fixture
def operator_client(in_tenant_a, host_client):
    client = host_client("alpha.localhost")
    client.force_login(get_user_model().objects.get(username="ops@alpha.test"))
    return client


def test_ledger_pages_are_read_only_and_filterable(operator_client):
    recorded = ledger_post_manual(
        debit="suspense", credit="platform_revenue", amount=1234, currency="USD", reason="admin test"
    )

    events = operator_client.get("/admin/ledger/ledgerevent/?type__exact=ManualAdjustment")
    event = operator_client.get(f"/admin/ledger/ledgerevent/{recorded.event.pk}/change/")
    add = operator_client.get("/admin/ledger/ledgerevent/add/")
    delete = operator_client.get(f"/admin/ledger/ledgerevent/{recorded.event.pk}/delete/")
    change_post = operator_client.post(
        f"/admin/ledger/ledgerevent/{recorded.event.pk}/change/", {"stream": "x"}
    )
    entries = operator_client.get("/admin/ledger/entry/?currency__exact=USD&side__exact=D")

    assert events.status_code == 200 and recorded.event.public_id.encode() in events.content
    assert event.status_code == 200 and b"12.34 USD" in event.content
    assert add.status_code == 403
    assert delete.status_code == 403
    assert change_post.status_code == 403
    assert entries.status_code == 200
    for page in ("account", "balance", "journaltransaction", "seal"):
        assert operator_client.get(f"/admin/ledger/{page}/").status_code == 200


def test_balance_over_time_chart(operator_client):
    ledger_post_manual(debit="suspense", credit="platform_revenue", amount=500, currency="USD", reason="one")
    ledger_post_manual(debit="suspense", credit="platform_revenue", amount=700, currency="USD", reason="two")
    account = Account.objects.get(code="platform_revenue", currency="USD")

    response = operator_client.get(f"/admin/ledger/account/{account.pk}/chart/?bucket=hour")

    assert response.status_code == 200
    assert b"<svg" in response.content
    assert b"12.00 USD" in response.content  # the closing balance in the table under the chart


def test_ledger_is_hidden_on_the_public_host(db, host_client):
    from apps.tenants.models import Marketplace  # noqa: F401 - public schema is active

    user = get_user_model().objects.create_superuser(
        username="owner", email="o@p.test", password="pw-12345678"
    )
    client = host_client("localhost")
    client.force_login(user)

    index = client.get("/admin/")

    assert index.status_code == 200
    assert b"/admin/ledger/" not in index.content
    assert b"/admin/tenants/marketplace/" in index.content
