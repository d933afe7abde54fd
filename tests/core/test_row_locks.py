"""Payments, billing and vendors take every row lock through their app's ``locks.py``, whose
docstring states the lock order (docs/architecture.md, "State machines and row locks"). The
simulator gateway stands for a processor and keeps its own locks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_LOCK = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b|\bFOR\s+(KEY\s+)?SHARE\b", re.IGNORECASE)
EXEMPT = ("apps/payments/gateways/simulator/",)


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return {
        id(n.body[0].value)
        for n in nodes
        if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }


def row_locks(source: str) -> list[int]:
    """The lines that lock rows: a ``select_for_update`` call, or SQL saying FOR UPDATE / FOR SHARE
    (docstrings and comments are not code)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    orm = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "select_for_update"]
    sql = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docstrings
        and SQL_LOCK.search(n.value)
    ]
    return sorted(orm + sql)


def test_the_check_sees_both_kinds_of_lock_and_ignores_prose():
    source = '''"""Locks FOR UPDATE."""
x = Model.objects.select_for_update().get(pk=1)  # FOR UPDATE
cur.execute("""SELECT 1
    FROM t FOR UPDATE""")
'''
    assert row_locks(source) == [2, 3]


def test_payments_billing_and_vendors_lock_rows_only_in_their_locks_module():
    found = []
    for app in ("payments", "billing", "vendors"):
        for path in sorted((ROOT / "apps" / app).rglob("*.py")):
            shown = path.relative_to(ROOT).as_posix()
            if path.name == "locks.py" or "/migrations/" in shown or shown.startswith(EXEMPT):
                continue
            found += [f"{shown}:{n}" for n in row_locks(path.read_text(encoding="utf-8"))]
    assert found == []
