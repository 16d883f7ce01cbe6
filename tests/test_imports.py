"""Imports are at module level, so a module's dependencies are visible at its top and its functions
are typed with real classes. A function-local import stays only with a comment saying why (a real
cycle, or start-up time that `conary --help` would pay)."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from conary.ccs import ComponentRules, SigningKey
from conary.cook import pipeline
from conary.fetch import Fetcher
from conary.recipe import MacroContext, Recipe

SRC = Path(__file__).resolve().parent.parent / "src" / "conary"


def _local_imports(path: Path) -> list[int]:
    """Line numbers of the import statements inside functions of *path*."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [sub.lineno for sub in ast.walk(node) if isinstance(sub, ast.Import | ast.ImportFrom)]
    return sorted(set(found))


def _explained(lines: list[str], lineno: int) -> bool:
    """The import's line has a comment, or the comment line above its group of imports does."""
    index = lineno - 1
    while True:
        if "#" in lines[index]:
            return True
        above = lines[index - 1].strip()
        if above.startswith("#"):
            return True
        if not above.startswith(("from ", "import ")):
            return False
        index -= 1


def test_every_local_import_says_why() -> None:
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        unexplained += [
            f"{path.relative_to(SRC)}:{n}: {lines[n - 1].strip()}"
            for n in _local_imports(path)
            if not _explained(lines, n)
        ]
    assert unexplained == []


def test_the_cook_pipeline_is_typed_with_the_real_classes() -> None:
    hints = {name: typing.get_type_hints(getattr(pipeline, name)) for name in (
        "load", "_fetcher", "_macro_context", "_component_rules", "_signing_key", "_expanded",
    )}  # fmt: skip
    assert hints["load"]["return"] is Recipe
    assert hints["_fetcher"]["return"] is Fetcher
    assert hints["_macro_context"]["return"] is MacroContext
    assert hints["_macro_context"]["recipe"] is Recipe
    assert hints["_component_rules"]["return"] == ComponentRules | None
    assert hints["_signing_key"]["return"] == tuple[SigningKey, Path | None]
    assert hints["_expanded"]["return"] is Recipe
    assert typing.get_type_hints(pipeline.source_items)["recipe"] is Recipe
