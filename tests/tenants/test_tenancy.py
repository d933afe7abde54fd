from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_exists, tenant_context

from apps.core.models import DurableTask
from apps.tenants.models import ApiKey, Domain, Marketplace
from apps.tenants.services import api_key_create, marketplace_create
from tests.support import BASE


def test_marketplace_gets_its_own_schema_with_operator_and_domain(db):
    slug = "m" + uuid.uuid4().hex[:10]

    made = marketplace_create(
        slug=slug,
        name="Gamma",
        domain=f"{slug}.localhost",
        owner_email="ops@g.test",
        operator_password="pw-123456789",
    )

    assert schema_exists(slug)
    assert made.domain.domain == f"{slug}.localhost"
    with tenant_context(made.marketplace):
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.get(username="ops@g.test")
        assert user.is_superuser and user.check_password("pw-123456789")
        # the schema was cloned with its migration history
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM django_migrations WHERE app = 'core'")
            assert cur.fetchone()[0] >= 1


def test_data_in_one_tenant_is_invisible_from_another(tenant_a, tenant_b, db):
    with tenant_context(tenant_a):
        DurableTask.objects.create(
            handler="x.y", idempotency_key="only-in-a", next_run_at="2030-01-01T00:00Z"
        )
        assert DurableTask.objects.filter(idempotency_key="only-in-a").count() == 1
    with tenant_context(tenant_b):
        assert DurableTask.objects.filter(idempotency_key="only-in-a").count() == 0


@pytest.mark.parametrize(
    ("slug", "domain", "message"),
    [
        ("alpha", "alpha-again.localhost", "slug 'alpha' is already taken"),
        ("public", "p.localhost", "slug 'public' is reserved"),
        ("tenant_template", "t.localhost", "slug 'tenant_template' is reserved"),
        ("Bad-Slug", "b.localhost", "invalid slug 'Bad-Slug'"),
        ("x", "x.localhost", "invalid slug 'x'"),
        ("drop;table", "d.localhost", "invalid slug 'drop;table'"),
        ("fresh_one", "alpha.localhost", "domain 'alpha.localhost' is already taken"),
        ("fresh_two", "not a domain", "invalid domain 'not a domain'"),
    ],
)
def test_create_marketplace_rejects_bad_input_and_changes_nothing(db, tenant_a, slug, domain, message):
    before = (Marketplace.objects.count(), Domain.objects.count())

    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("create_marketplace", slug=slug, name="X", domain=domain, owner_email="a@b.test")

    assert (Marketplace.objects.count(), Domain.objects.count()) == before
    if slug not in ("alpha", "public", "tenant_template"):
        assert not schema_exists(slug.lower()) if slug.isidentifier() else True


def test_create_marketplace_command_exits_non_zero_with_one_line(db, tenant_a):
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_marketplace",
            "--slug",
            "public",
            "--name",
            "X",
            "--domain",
            "x.localhost",
            "--owner-email",
            "a@b.test",
        ],
        cwd=BASE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["CommandError: slug 'public' is reserved"]


def test_api_keys_are_hashed_at_rest(db, tenant_a):
    key, raw = api_key_create(tenant=tenant_a)

    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith("sk_test_") and len(raw) == 48
    assert raw not in (stored.key_hash, stored.prefix, stored.last4)
    assert stored.last4 == raw[-4:]


def test_create_api_key_prints_the_key_last(db, tenant_a, capsys):
    call_command("create_api_key", tenant="alpha")

    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("sk_test_")
    from apps.tenants.selectors import api_key_lookup

    found = api_key_lookup(last)
    assert found is not None and found.tenant == tenant_a


def test_create_api_key_issues_a_restricted_key_with_known_scopes_only(db, tenant_a, capsys):
    from apps.tenants.selectors import api_key_lookup

    call_command("create_api_key", tenant="alpha", scopes="payments=write, customers=read")
    call_command("create_api_key", tenant="alpha", scopes='{"events": "read"}')

    out = capsys.readouterr().out.strip().splitlines()
    first, second = api_key_lookup(out[1]), api_key_lookup(out[3])
    assert first is not None and first.scopes == {"payments": "write", "customers": "read"}
    assert second is not None and second.scopes == {"events": "read"}
    before = ApiKey.objects.count()
    for scopes, message in (
        ("payment=write", "unknown scope 'payment'"),
        ("payments=admin", "scope 'payments' must be read or write"),
        ("payments", "resource=level pairs"),
        ("", "leave it out for a key with full access"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("create_api_key", tenant="alpha", scopes=scopes)
    assert ApiKey.objects.count() == before


def test_every_api_resource_is_a_known_scope():
    import apps.api.urls  # noqa: F401  (every view, loaded)
    from apps.api.v1.common import ApiView

    def views(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from views(sub)

    resources = {view.scope_resource for view in views(ApiView) if view.scope_resource}
    assert resources == set(ApiKey.SCOPE_RESOURCES)
