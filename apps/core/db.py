"""Database helpers shared by the hot paths (the ledger's postings, the payment mesh's writes)."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections


class _PreparingCursor(psycopg.Cursor):
    """Server-side binding, every statement prepared."""

    def execute(self, query, params=None, *, prepare=None, binary=None):  # type: ignore[override]
        return super().execute(query, params, prepare=True, binary=binary)


def prepared_cursor(db: Any = None) -> Any:
    """A cursor on Django's connection ``db`` (default: the default database's wrapper) and its
    transaction, wrapped like Django's own cursors (error translation, execute wrappers, query
    log), whose statements are prepared: parsed and planned once per connection.

    It does not set the search path (django-tenants does that for Django's own cursors only): use
    it with schema-qualified SQL alone, and cache such statements per schema."""
    db = connections[DEFAULT_DB_ALIAS] if db is None else db
    db.ensure_connection()
    pg = db.connection
    if pg.prepare_threshold is None:
        # Django sets None, which makes psycopg ignore prepare=True too. A threshold no query
        # reaches keeps automatic preparation off for every other cursor (Django's bind client-side
        # and never prepare anyway) while this one's explicit prepare=True takes effect.
        pg.prepare_threshold = 2**31 - 1
    raw = _PreparingCursor(pg)
    return db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)
