"""Fast schema cloning from the migrated template.

django-tenants' ``clone_schema`` (a large PL/pgSQL function) took ~0.8 s for our ~30 tables and
renamed unique constraints on the way. Here the template's DDL is read from the catalog once per
process (and again whenever the template's migration history changes), with every object keeping
its own name, and replayed into the new schema in one round trip:

1. tables with their columns, defaults, identity and storage (``LIKE ... INCLUDING``);
2. the template's rows (migration history, permissions, reference data), identity sequences moved on;
3. primary keys, unique and check constraints, then indexes, foreign keys and triggers, by name.

``schema_diff`` compares two schemas' catalogs; the tests use it to prove a clone is exact.
"""

from __future__ import annotations

import threading

from django.db import connection

_cache: dict[str, tuple[str, list[str]]] = {}
_lock = threading.Lock()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fingerprint(cur, template: str) -> str:
    cur.execute(
        f"SELECT count(*)::text || ':' || coalesce(max(id), 0)::text FROM {_q(template)}.django_migrations"
    )
    return cur.fetchone()[0]


def _template_ddl(cur, template: str) -> list[str]:
    """Statements that rebuild ``template`` in the current search path (the new schema first)."""
    cur.execute("SELECT set_config('search_path', %s, true)", [_q(template)])  # defs come out unqualified
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        [template],
    )
    tables = [r[0] for r in cur.fetchall()]
    src = _q(template)
    create = [
        f"CREATE TABLE {_q(t)} (LIKE {src}.{_q(t)} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED "
        f"INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS)"
        for t in tables
    ]
    copy = []
    for t in tables:
        copy.append(f"INSERT INTO {_q(t)} OVERRIDING SYSTEM VALUE SELECT * FROM {src}.{_q(t)}")
    cur.execute(
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND a.attidentity <> '' "
        "AND NOT a.attisdropped",
        [template],
    )
    for table, column in cur.fetchall():
        copy.append(
            f"SELECT setval(pg_get_serial_sequence({_sql_str(_q(table))}, {_sql_str(column)}), "
            f"coalesce((SELECT max({_q(column)}) FROM {_q(table)}), 0) + 1, false)"
        )
    cur.execute(
        "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid), con.contype FROM pg_constraint con "
        "JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND con.contype IN ('p', 'u', 'c', 'x', 'f') "
        "ORDER BY CASE con.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 1 WHEN 'c' THEN 2 ELSE 3 END, "
        "c.relname, con.conname",
        [template],
    )
    constraints = cur.fetchall()
    own = [
        f"ALTER TABLE {_q(t)} ADD CONSTRAINT {_q(name)} {d}"
        for t, name, d, kind in constraints
        if kind != "f"
    ]
    foreign = [
        f"ALTER TABLE {_q(t)} ADD CONSTRAINT {_q(name)} {d}"
        for t, name, d, kind in constraints
        if kind == "f"
    ]
    cur.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid) ORDER BY 1",
        [template],
    )
    indexes = [r[0] for r in cur.fetchall()]
    cur.execute(
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1",
        [template],
    )
    triggers = [r[0] for r in cur.fetchall()]
    cur.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('v', 'm', 'f')",
        [template],
    )
    if cur.fetchone()[0]:
        raise RuntimeError("the template holds views or foreign tables, which fast cloning does not copy")

    # pg_get_indexdef / pg_get_triggerdef qualify names with the schema whatever the search path
    # (a PostgreSQL hardening); strip the template's qualifier so the new schema is used instead.
    def local(statement: str) -> str:
        return statement.replace(f"{_q(template)}.", "").replace(f"{template}.", "")

    return [
        *create,
        *copy,
        *(local(x) for x in own),
        *(local(x) for x in indexes),
        *(local(x) for x in foreign),
        *(local(x) for x in triggers),
    ]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def clone_schema(template: str, new: str) -> None:
    """Create schema ``new`` as an exact copy of ``template`` (structure, names, triggers, rows).
    Runs in the caller's transaction, so a failure leaves nothing behind."""
    with connection.cursor() as cur:
        fingerprint = _fingerprint(cur, template)
        with _lock:
            cached = _cache.get(template)
            if cached is None or cached[0] != fingerprint:
                cached = (fingerprint, _template_ddl(cur, template))
                _cache[template] = cached
        cur.execute(f"CREATE SCHEMA {_q(new)}")
        cur.execute("SELECT set_config('search_path', %s, true)", [f"{_q(new)}, public"])
        cur.execute(";\n".join(cached[1]))
        cur.execute("SELECT set_config('search_path', 'public', true)")


def schema_diff(a: str, b: str) -> list[str]:
    """Differences between two schemas' tables, columns, constraints, indexes and triggers."""
    queries = {
        "columns": "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || "
        "coalesce(is_identity, '') || ' ' || coalesce(replace(column_default, %(s)s || '.', ''), '') "
        "FROM information_schema.columns WHERE table_schema = %(s)s",
        # CHECK expressions are compared by name and kind: re-parsing prints casts differently.
        "constraints": "SELECT c.relname || ' ' || con.conname || ' ' || CASE WHEN con.contype = 'c' "
        "THEN 'CHECK' ELSE replace(pg_get_constraintdef(con.oid), %(s)s || '.', '') END "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %(s)s",
        "indexes": "SELECT indexname || ' ' || replace(indexdef, %(s)s || '.', '') FROM pg_indexes "
        "WHERE schemaname = %(s)s",
        "triggers": "SELECT c.relname || ' ' || t.tgname || ' ' || t.tgtype || ' ' || t.tgfoid::regproc::text || ' ' "
        "|| t.tgdeferrable || t.tginitdeferred FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s AND NOT t.tgisinternal",
    }
    out = []
    with connection.cursor() as cur:
        cur.execute("SELECT set_config('search_path', 'public', true)")
        for kind, sql in queries.items():
            sides = []
            for schema in (a, b):
                cur.execute(sql.replace("%(s)s", _sql_str(schema)))
                sides.append({r[0] for r in cur.fetchall()})
            out += [f"{kind}: only in {a}: {x}" for x in sorted(sides[0] - sides[1])]
            out += [f"{kind}: only in {b}: {x}" for x in sorted(sides[1] - sides[0])]
    return out
