"""Checking many recipe files at once: files and directories (searched recursively for *.toml)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.recipe.loader import CheckResult, check_path
from conary.recipe.problems import Problem


@dataclass(frozen=True)
class CheckReport:
    """Results for every recipe checked; `skipped` lists TOML files found in directories that
    have no [package] table (such as a versions.toml) and so are not recipes."""

    results: tuple[CheckResult, ...]
    skipped: tuple[str, ...] = ()
    notes: tuple[Problem, ...] = ()  # findings about the paths given, such as a directory without recipes

    @property
    def problems(self) -> list[Problem]:
        return [*self.notes, *(p for r in self.results for p in r.problems)]

    @property
    def error_count(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warning_count(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def summary(self) -> str:
        # One fixed shape (always plural) so scripts can parse it.
        return f"{len(self.results)} recipes, {self.error_count} errors, {self.warning_count} warnings"

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipes": len(self.results),
            "errors": self.error_count,
            "warnings": self.warning_count,
            "skipped": list(self.skipped),
            "notes": [p.to_dict() for p in self.notes],
            "files": [
                {
                    "path": r.path,
                    "ok": r.recipe is not None,
                    "name": r.recipe.package.name if r.recipe else None,
                    "problems": [p.to_dict() for p in r.problems],
                }
                for r in self.results
            ],
        }


def recipe_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, bool]]:
    """(path, named_explicitly) for each file to check; directories yield their *.toml, sorted."""
    for given in paths:
        p = Path(given)
        if p.is_dir():
            for found in sorted(p.rglob("*.toml")):
                if found.is_file():
                    yield str(found), False
        else:
            yield os.fspath(given), True


def check_paths(paths: Iterable[str | os.PathLike[str]]) -> CheckReport:
    """Check every recipe under *paths*. A file named explicitly is always reported, even when
    it is not a recipe; one found in a directory without a [package] table is skipped."""
    results: list[CheckResult] = []
    skipped: list[str] = []
    notes: list[Problem] = []
    for given in paths:
        found = 0
        for path, explicit in recipe_files([given]):
            result = check_path(path)
            if not result.is_recipe and not explicit:
                skipped.append(path)
                continue
            results.append(result)
            found += 1
        if not found and Path(given).is_dir():
            # Checking nothing is not a pass: a typo in the path or recipes named *.recipe would
            # otherwise report "0 recipes, 0 errors" and exit 0 in CI.
            notes.append(Problem(os.fspath(given), "warning", "*.toml", _no_recipes(Path(given))))
    return CheckReport(tuple(results), tuple(skipped), tuple(notes))


def _no_recipes(directory: Path) -> str:
    tomls = sum(1 for p in directory.rglob("*.toml") if p.is_file())
    if tomls:
        return f"no recipe in this directory: {tomls} TOML files, none with a [package] table"
    return "no recipe in this directory: no TOML files (recipes are found as *.toml)"
