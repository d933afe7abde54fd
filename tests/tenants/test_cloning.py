from __future__ import annotations

from django.db import connection

from apps.tenants.cloning import schema_diff


def test_a_cloned_marketplace_is_an_exact_copy_of_the_template(tenant_a, db):
    assert schema_diff("tenant_template", tenant_a.schema_name) == []


def test_the_clone_keeps_constraint_names_and_the_ledger_triggers(tenant_a, db):
    with connection.cursor() as cur:
        cur.execute(
            "SELECT con.conname FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace "
            "WHERE n.nspname = %s AND con.conname = 'ledger_event_stream_version'",
            [tenant_a.schema_name],
        )
        assert cur.fetchall() == [("ledger_event_stream_version",)]
        cur.execute(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1",
            [tenant_a.schema_name],
        )
        triggers = [r[0] for r in cur.fetchall()]
    assert "ledger_transaction_balanced" in triggers
    assert "ledger_event_no_update_delete" in triggers
    assert len(triggers) == 12 + sum(1 for t in triggers if not t.startswith("ledger_"))


def test_cloned_rows_and_identity_sequences_continue(tenant_a, db):
    from django.contrib.auth.models import Permission
    from django_tenants.utils import tenant_context

    with tenant_context(tenant_a):
        assert Permission.objects.filter(codename="add_paymentintent").exists()
        perm = Permission.objects.create(codename="x_test", name="x", content_type_id=1)
        assert (
            perm.pk > Permission.objects.exclude(pk=perm.pk).order_by("-pk").values_list("pk", flat=True)[0]
        )
