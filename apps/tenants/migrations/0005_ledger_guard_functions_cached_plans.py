"""The ledger's commit-time guards, same checks and messages, without re-planning per call.

0002 ran its queries through ``EXECUTE format(..., TG_TABLE_SCHEMA)``: dynamic SQL is parsed and
planned on every call, which made the deferred balance check about 100 us per journal
transaction (a 1,000-event batch spent 0.1 s in it at COMMIT). Here the queries are static, so
PL/pgSQL caches their plans, and they still read the trigger's own schema: the functions point
``search_path`` at it for the duration of the check (a cached plan is re-made whenever the search
path differs from the one it was planned under, so each marketplace gets its own) and put the
caller's path back. ``pg_temp`` is listed last so a temporary table can never stand in for a
ledger table. On an error the transaction (or savepoint) is rolled back, which restores the path.
"""

import importlib

from django.db import migrations

FUNCTIONS = r"""
-- Deferred to commit: the journal transaction's entries must balance per currency.
CREATE OR REPLACE FUNCTION public.ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    caller_path text := current_setting('search_path');
    n integer;
    bad record;
BEGIN
    PERFORM set_config('search_path', quote_ident(TG_TABLE_SCHEMA) || ', pg_temp', true);
    SELECT count(*) INTO n FROM ledger_entry WHERE transaction_id = NEW.id;
    IF n < 2 THEN
        RAISE EXCEPTION 'journal transaction % has % entries; double entry needs at least 2', NEW.id, n
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT currency, sum(amount) FILTER (WHERE side = 'D') AS d, sum(amount) FILTER (WHERE side = 'C') AS c
        INTO bad
        FROM ledger_entry WHERE transaction_id = NEW.id GROUP BY currency
        HAVING coalesce(sum(amount) FILTER (WHERE side = 'D'), 0) <> coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
        LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'journal transaction % is unbalanced in %: debits % <> credits %',
            NEW.id, bad.currency, coalesce(bad.d, 0), coalesce(bad.c, 0)
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('search_path', caller_path, true);
    RETURN NULL;
END
$$;

-- Entries may only be written together with their journal transaction (same database transaction),
-- so nobody can add lines to a posted transaction later.
CREATE OR REPLACE FUNCTION public.ledger_entries_with_transaction() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    caller_path text := current_setting('search_path');
    stray bigint;
BEGIN
    PERFORM set_config('search_path', quote_ident(TG_TABLE_SCHEMA) || ', pg_temp', true);
    SELECT n.transaction_id INTO stray
        FROM new_rows n LEFT JOIN ledger_transaction t ON t.id = n.transaction_id
        WHERE t.txid IS DISTINCT FROM pg_current_xact_id()::text::bigint LIMIT 1;
    IF stray IS NOT NULL THEN
        RAISE EXCEPTION 'entries of journal transaction % can only be written with it', stray
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM set_config('search_path', caller_path, true);
    RETURN NULL;
END
$$;
"""

# Back to 0002's definitions (the same CREATE OR REPLACE statements).
PREVIOUS = importlib.import_module("apps.tenants.migrations.0002_ledger_guard_functions").FUNCTIONS


class Migration(migrations.Migration):
    dependencies = [("tenants", "0004_marketplace_max_payment_amount")]
    operations = [migrations.RunSQL(FUNCTIONS, PREVIOUS)]
