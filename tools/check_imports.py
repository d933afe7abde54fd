"""Fail on an import of ``apps.*`` inside a function or method (``make lint``).

The layering (docs/architecture.md, the import-linter contracts in pyproject.toml) is kept by imports
at module level: an import inside a function hides a dependency, and most often one that would make
a cycle. One is allowed only for a real reason (a heavy optional dependency, a management command's
lazy import...), written on its line as ``# lazy: <reason>``. The one place that needs no comment is
``AppConfig.ready()`` in an app's ``apps.py``: Django's start-up hook, where apps register with the
layers below them (apps.py itself is imported before any model may be).

Also counted: ``importlib.import_module("apps....")`` and ``__import__`` with a literal name, and
relative imports (resolved against the module they are in). Migrations are not checked.

Usage: python tools/check_imports.py [PATH ...]   (default: apps config). Prints each offender as
``path:line: <the import>`` and exits 1 if there is any."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = ("apps", "config")
CHECKED_PACKAGE = "apps"
LAZY = re.compile(r"#\s*lazy:\s*\S")
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_DYNAMIC = {"import_module", "__import__"}


def _module_of(path: Path) -> str:
    parts = list(_shown(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name a ``from ... import`` reads, relative ones resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [_resolve(node, module, is_package)]
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if name in _DYNAMIC and isinstance(first, ast.Constant) and isinstance(first.value, str):
            return [first.value]
    return []


def _is_app_ready(node: ast.AST, parent: ast.AST | None, is_apps_module: bool) -> bool:
    return (
        is_apps_module
        and isinstance(node, ast.FunctionDef)
        and node.name == "ready"
        and isinstance(parent, ast.ClassDef)
    )


def _in_functions(tree: ast.Module, is_apps_module: bool) -> Iterator[ast.stmt | ast.expr]:
    """Every statement and expression inside a function, method or lambda body (but not inside
    an ``AppConfig.ready`` of an apps.py)."""
    stack: list[tuple[ast.AST, ast.AST | None, bool]] = [(tree, None, False)]
    while stack:
        node, parent, inside = stack.pop()
        if _is_app_ready(node, parent, is_apps_module):
            continue
        if inside and isinstance(node, ast.stmt | ast.expr):
            yield node
        for child in ast.iter_child_nodes(node):
            stack.append((child, node, inside or isinstance(node, _FUNCTIONS)))


def offenders(path: Path, module: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, import) for each import of apps.* inside a function of ``path``; ``module`` is its
    dotted name (by default, from its place under the repository)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    module, is_package = module or _module_of(path), path.name == "__init__.py"
    nodes = _in_functions(ast.parse(source, filename=str(path)), path.name == "apps.py")
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        names = _names(node, module, is_package)
        if not any(n == CHECKED_PACKAGE or n.startswith(CHECKED_PACKAGE + ".") for n in names):
            continue
        first, last = node.lineno, node.end_lineno or node.lineno
        if any(LAZY.search(line) for line in lines[first - 1 : last]):
            continue
        yield first, " ".join(line.strip() for line in lines[first - 1 : last])


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def python_files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = (ROOT / name).resolve()
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            if "migrations" not in _shown(file).parts:
                yield file


def main(argv: list[str]) -> int:
    found = 0
    for file in python_files(argv or list(DEFAULT_PATHS)):
        for line, text in offenders(file):
            print(f"{_shown(file)}:{line}: {text}")
            found += 1
    if found:
        print(
            f"\n{found} import(s) of {CHECKED_PACKAGE}.* inside a function. Move each to module level; "
            "if one must stay lazy for a real reason, say why on its line: `# lazy: <reason>`.",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
