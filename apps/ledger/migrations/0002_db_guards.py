"""PostgreSQL enforces the ledger's rules, whoever the database user is:
- events, journal transactions, entries, chain links and seals refuse UPDATE, DELETE, TRUNCATE;
- a deferred constraint trigger checks at commit that each journal transaction balances per currency;
- entries can only be inserted in the database transaction that created their journal transaction.
The trigger functions live in public (apps/tenants/migrations/0002)."""

from django.db import migrations

APPEND_ONLY = ["ledger_event", "ledger_transaction", "ledger_entry", "ledger_chain_link", "ledger_seal"]

FORWARD = "\n".join(
    f"""
CREATE TRIGGER {t}_no_update_delete BEFORE UPDATE OR DELETE ON {t}
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_change();
CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_forbid_change();"""
    for t in APPEND_ONLY
) + """
CREATE CONSTRAINT TRIGGER ledger_transaction_balanced AFTER INSERT ON ledger_transaction
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.ledger_check_balanced();
CREATE TRIGGER ledger_entry_with_transaction AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION public.ledger_entries_with_transaction();
"""

BACKWARD = "\n".join(
    f"DROP TRIGGER IF EXISTS {t}_no_update_delete ON {t}; DROP TRIGGER IF EXISTS {t}_no_truncate ON {t};"
    for t in APPEND_ONLY
) + """
DROP TRIGGER IF EXISTS ledger_transaction_balanced ON ledger_transaction;
DROP TRIGGER IF EXISTS ledger_entry_with_transaction ON ledger_entry;
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial"), ("tenants", "0002_ledger_guard_functions")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
