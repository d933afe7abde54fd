"""tools/check_imports.py: imports of apps.* inside functions are found, however they are written,
unless they say why they are lazy."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tools.check_imports import ROOT, main, offenders


def found(tmp_path: Path, source: str, *, name: str = "mod.py", module: str = "apps.pkg.mod") -> list[int]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return [line for line, _ in offenders(path, module)]


def test_module_level_imports_are_fine(tmp_path):
    assert found(tmp_path, "import apps.core\nfrom apps.core.ids import new_id\n") == []


def test_imports_inside_functions_methods_and_lambdas_are_found(tmp_path):
    source = """
    def f():
        from apps.core.ids import new_id

    class C:
        def m(self):
            import apps.payments.services as s

        async def a(self):
            if True:
                from apps import billing

    g = lambda: __import__("apps.vendors")
    """
    assert found(tmp_path, source) == [3, 7, 11, 13]


def test_relative_and_dynamic_imports_are_resolved(tmp_path):
    source = """
    import importlib

    def f():
        from . import sibling
        from ..other import thing
        importlib.import_module("apps.ledger.services")
        importlib.import_module("json")
    """
    assert found(tmp_path, source) == [5, 6, 7]


def test_other_packages_are_not_counted(tmp_path):
    source = """
    def f():
        import json
        from django.db import transaction
        from appsx import y
    """
    assert found(tmp_path, source) == []


def test_a_lazy_comment_with_a_reason_allows_one(tmp_path):
    source = """
    def f():
        from apps.core import health  # lazy: only the health view needs it
        from apps.core import (  # lazy:
            money,
        )
        from apps.core import (
            ids,
        )  # lazy: the comment may close the statement
    """
    assert found(tmp_path, source) == [4]


def test_app_config_ready_is_the_start_up_hook(tmp_path):
    source = """
    from django.apps import AppConfig

    class PaymentsConfig(AppConfig):
        def ready(self):
            from apps.payments import config

        def other(self):
            from apps.payments import config
    """
    assert found(tmp_path, source, name="apps.py") == [9]
    assert found(tmp_path, source, name="elsewhere.py") == [6, 9]


def test_main_prints_each_offender_as_path_and_line_and_fails(tmp_path, capsys):
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from apps.core.ids import new_id\n")
    assert main([str(path)]) == 1
    assert capsys.readouterr().out == f"{path}:2: from apps.core.ids import new_id\n"


def test_main_is_quiet_and_passes_when_there_is_none(capsys):
    assert main([str(ROOT / "apps" / "core" / "ids.py")]) == 0
    assert capsys.readouterr().out == ""
