"""Test set-up shared by the suite.

django-tenants has no pytest-django integration, so the session-scoped ``django_db_setup``
below builds the test database once: public tenant, the template schema, and two committed
marketplaces (``alpha`` and ``beta``) that every test can use. Tests run inside a transaction
(the ``db`` fixture) in a tenant's schema; tests that need a real worker commit instead
(``committed``) and clean up after themselves by using unique names.
"""

from __future__ import annotations

import contextlib

import pytest
from django.test import Client
from django_tenants.utils import schema_context, tenant_context

ALPHA = {
    "slug": "alpha",
    "name": "Alpha Market",
    "domain": "alpha.localhost",
    "owner_email": "ops@alpha.test",
}
BETA = {"slug": "beta", "name": "Beta Market", "domain": "beta.localhost", "owner_email": "ops@beta.test"}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from apps.tenants.models import Marketplace
    from apps.tenants.services import marketplace_create, public_tenant_ensure, template_ensure

    with django_db_blocker.unblock():
        # pytest-django creates the test database only when a collected test asks for `db`; a run
        # of `committed` tests alone (`make bench`) would otherwise use the development database.
        created = None
        if connection.settings_dict["NAME"] != connection.settings_dict["TEST"]["NAME"]:
            created = setup_databases(verbosity=0, interactive=False, aliases={"default"})  # type: ignore[arg-type]
        public_tenant_ensure()
        template_ensure()
        for spec in (ALPHA, BETA):
            if not Marketplace.objects.filter(schema_name=spec["slug"]).exists():
                marketplace_create(**spec, operator_password="test-password-123")
    yield
    if created is not None:
        with django_db_blocker.unblock():
            teardown_databases(created, verbosity=0)


@pytest.fixture(autouse=True)
def _public_schema_around_each_test():
    """Requests and tenant_context leave the connection's schema behind; start each test clean."""
    from apps.tenants.db import tenant_connection

    tenant_connection().set_schema_to_public()
    yield
    tenant_connection().set_schema_to_public()


@pytest.fixture(scope="session")
def tenant_a(django_db_setup, django_db_blocker):
    from apps.tenants.models import Marketplace

    with django_db_blocker.unblock():
        return Marketplace.objects.get(schema_name="alpha")


@pytest.fixture(scope="session")
def tenant_b(django_db_setup, django_db_blocker):
    from apps.tenants.models import Marketplace

    with django_db_blocker.unblock():
        return Marketplace.objects.get(schema_name="beta")


@pytest.fixture
def in_tenant_a(db, tenant_a):
    """Run the test body in tenant A's schema, inside the test transaction."""
    with tenant_context(tenant_a):
        yield tenant_a


@pytest.fixture
def in_tenant_b(db, tenant_b):
    with tenant_context(tenant_b):
        yield tenant_b


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """Database access outside the test transaction: writes are committed (for real workers)."""
    with django_db_blocker.unblock():
        yield
        from apps.tenants.db import tenant_connection

        tenant_connection().set_schema_to_public()


@pytest.fixture
def host_client():
    """``host_client("alpha.localhost").get(...)``: a test client bound to a Host header."""

    def make(host: str) -> Client:
        return Client(HTTP_HOST=host)

    return make


@contextlib.contextmanager
def public():
    with schema_context("public"):
        yield
