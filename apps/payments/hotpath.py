"""Statements of the payment mesh's hot path, built once from the models' ``_meta``.

The ORM compiles every statement anew (a few hundred microseconds of CPU each, more than the
database spends on it) and sends one statement per row. A payment writes a handful of rows per
transaction, so here each transaction's writes go out as one statement (data-modifying CTEs) whose
text is built once per shape. Values are produced exactly as ``Model.save`` produces them (each
field's ``pre_save`` then ``get_db_prep_save``, so ``auto_now`` fields behave the same). The
attempt is locked and read together with its payment by one plain statement too, on the cursor
here: ``apps.payments.locks.lock_attempt``.

Models with ``pre_save`` / ``post_save`` receivers are written through ``Model.save`` instead, so
no signal receiver is ever skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.models import Field, Model
from django.db.models.signals import post_save, pre_save

from apps.core.db import prepared_cursor
from apps.tenants.db import current_schema


def _qn(name: str | None) -> str:
    return connection.ops.quote_name(cast(str, name))


def _pk(model: type[Model]) -> Field:
    return cast(Field, model._meta.pk)


def qualified_table(model: type[Model], schema: str) -> str:
    return f"{_qn(schema)}.{_qn(model._meta.db_table)}"


def _signalled(model: type[Model]) -> bool:
    return pre_save.has_listeners(model) or post_save.has_listeners(model)


@cache
def _insert_sql(model: type[Model], schema: str) -> str:
    fields = model._meta.concrete_fields
    return (
        f"INSERT INTO {qualified_table(model, schema)} ({', '.join(_qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )


@cache
def _update_sql(model: type[Model], names: tuple[str, ...], schema: str) -> tuple[str, tuple[Field, ...]]:
    meta = model._meta
    fields = tuple(cast(Field, meta.get_field(name)) for name in names)
    sets = ", ".join(f"{_qn(f.column)} = %s" for f in fields)
    sql = (
        f"UPDATE {qualified_table(model, schema)} SET {sets} WHERE {_qn(_pk(model).column)} = %s RETURNING 1"
    )
    return sql, fields


def write(*, insert: Sequence[Model] = (), update: Sequence[tuple[Model, Sequence[str]]] = ()) -> None:
    """INSERT each of ``insert`` (new rows, primary keys set) and UPDATE the named fields of each
    ``(instance, field names)`` of ``update``, in one statement. Like ``save(update_fields=...)``,
    raises DatabaseError if a row to update is not there."""
    models = {type(obj) for obj in insert} | {type(obj) for obj, _ in update}
    if any(_signalled(m) for m in models):
        for obj in insert:
            obj.save(force_insert=True)
        for obj, names in update:
            obj.save(update_fields=names)
        return
    db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself: every access through the proxy costs
    schema = current_schema()
    parts: list[str] = []
    params: list[Any] = []
    for obj in insert:
        parts.append(_insert_sql(type(obj), schema))
        params += [f.get_db_prep_save(f.pre_save(obj, True), db) for f in obj._meta.concrete_fields]
    for obj, names in update:
        sql, fields = _update_sql(type(obj), tuple(names), schema)
        parts.append(sql)
        params += [f.get_db_prep_save(f.pre_save(obj, False), db) for f in fields]
        params.append(_pk(type(obj)).get_db_prep_value(obj.pk, db))
    if not parts:
        return
    n_insert = len(insert)
    ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts))
    counts = ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(n_insert, len(parts)))
    sql = f"WITH {ctes} SELECT {counts or '0'}"
    with prepared_cursor(db) as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
    if update and any(c != 1 for c in row):
        raise DatabaseError(f"{len(update)} rows to update, the statement found {list(row)}")
    for obj in insert:
        obj._state.adding = False
        obj._state.db = db.alias
