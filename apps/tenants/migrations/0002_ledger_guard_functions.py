"""Guard functions for the ledger's tables, defined once in the public schema (the ledger's
triggers in every marketplace schema call them). Kept in a public-only app so parallel tenant
migrations never race on CREATE OR REPLACE FUNCTION."""

from django.db import migrations

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION public.ledger_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'raise_exception', HINT = 'record a reversing event instead';
END
$$;

-- Deferred to commit: the journal transaction's entries must balance per currency.
CREATE OR REPLACE FUNCTION public.ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    bad record;
BEGIN
    EXECUTE format('SELECT count(*) FROM %I.ledger_entry WHERE transaction_id = $1', TG_TABLE_SCHEMA)
        INTO n USING NEW.id;
    IF n < 2 THEN
        RAISE EXCEPTION 'journal transaction % has % entries; double entry needs at least 2', NEW.id, n
            USING ERRCODE = 'check_violation';
    END IF;
    EXECUTE format(
        'SELECT currency, sum(amount) FILTER (WHERE side = ''D'') AS d, sum(amount) FILTER (WHERE side = ''C'') AS c '
        'FROM %I.ledger_entry WHERE transaction_id = $1 GROUP BY currency '
        'HAVING coalesce(sum(amount) FILTER (WHERE side = ''D''), 0) <> coalesce(sum(amount) FILTER (WHERE side = ''C''), 0) '
        'LIMIT 1', TG_TABLE_SCHEMA)
        INTO bad USING NEW.id;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced in %: debits % <> credits %',
            NEW.id, bad.currency, coalesce(bad.d, 0), coalesce(bad.c, 0)
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

-- Entries may only be written together with their journal transaction (same database transaction),
-- so nobody can add lines to a posted transaction later.
CREATE OR REPLACE FUNCTION public.ledger_entries_with_transaction() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stray bigint;
BEGIN
    EXECUTE format(
        'SELECT n.transaction_id FROM new_rows n LEFT JOIN %I.ledger_transaction t ON t.id = n.transaction_id '
        'WHERE t.txid IS DISTINCT FROM pg_current_xact_id()::text::bigint LIMIT 1', TG_TABLE_SCHEMA)
        INTO stray;
    IF stray IS NOT NULL THEN
        RAISE EXCEPTION 'entries of journal transaction % can only be written with it', stray
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS public.ledger_forbid_change();
DROP FUNCTION IF EXISTS public.ledger_check_balanced();
DROP FUNCTION IF EXISTS public.ledger_entries_with_transaction();
"""


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunSQL(FUNCTIONS, DROP)]
