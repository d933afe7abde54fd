"""Ledger tests run against real PostgreSQL with committed writes: the double-entry check is a
deferred constraint trigger that fires only at COMMIT, and sealing takes only events whose
writing transactions have finished (``pg_snapshot_xmin``), so nothing here may run inside the
usual test transaction. Each test that needs the database gets a fresh marketplace instead."""

from __future__ import annotations

import uuid

import pytest
from django_tenants.utils import tenant_context


def fresh_marketplace():
    """A new committed marketplace (schema cloned from the template, chart of accounts installed)."""
    from apps.tenants.services import marketplace_create

    slug = "l" + uuid.uuid4().hex[:10]
    made = marketplace_create(
        slug=slug,
        name=f"Ledger {slug}",
        domain=f"{slug}.localhost",
        owner_email=f"ops@{slug}.test",
        operator_password="ledger-test-password",
    )
    return made.marketplace


@pytest.fixture
def ledger_tenant(committed):
    """A fresh marketplace with an empty ledger; the test body runs in its schema, writes commit."""
    tenant = fresh_marketplace()
    with tenant_context(tenant):
        yield tenant


@pytest.fixture
def in_empty_ledger(in_tenant_a):
    """Tenant A inside the test transaction (rolled back afterwards), with an empty ledger. The
    transaction never commits, so nothing here can be sealed; pytest-django's teardown still runs
    the deferred constraint triggers (``SET CONSTRAINTS ALL IMMEDIATE``) before the rollback."""
    from tests.ledger.observe import row_counts

    assert row_counts()["ledger_event"] == 0, "tenant A's ledger must hold no committed events"
    yield in_tenant_a


@pytest.fixture(scope="module")
def posted_and_sealed(django_db_setup, django_db_blocker):
    """One marketplace per module with a few sealed events, for tests that only try (and fail)
    to change it. Its rows are committed; the tests must leave them as they are."""
    from apps.ledger import services
    from apps.tenants.db import tenant_connection
    from tests.ledger.observe import seal_everything

    with django_db_blocker.unblock():
        tenant = fresh_marketplace()
        with tenant_context(tenant):
            for amount in (100, 250):
                services.ledger_post_manual(
                    debit="suspense", credit="platform_revenue", amount=amount, currency="USD", reason="seed"
                )
            seal_everything()
        tenant_connection().set_schema_to_public()
    return tenant


@pytest.fixture
def in_posted_and_sealed(posted_and_sealed, committed):
    with tenant_context(posted_and_sealed):
        yield posted_and_sealed
