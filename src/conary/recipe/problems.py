"""Problems found in a recipe file, and the error that carries them to callers that want a Recipe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from conary.errors import InputError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: `key_path` is like `source.additional[1].checksum`; TOML syntax errors have no
    key path but a line and column instead."""

    path: str
    severity: Severity
    key_path: str
    message: str
    line: int | None = None
    column: int | None = None

    @property
    def location(self) -> str:
        if self.key_path:
            return self.key_path
        if self.line is not None:
            return f"line {self.line}, column {self.column}"
        return "file"

    def render(self) -> str:
        return f"{self.path}: {self.severity}: {self.location}: {self.message}"

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "path": self.path,
            "severity": self.severity,
            "key_path": self.key_path,
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }


def errors_of(problems: Sequence[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


class RecipeError(InputError):
    """A recipe that cannot be loaded. `problems` holds every problem of the file (warnings too)."""

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        errors = errors_of(self.problems)
        first = errors[0] if errors else None
        what = first.message if first else "invalid recipe"
        if len(errors) > 1:
            what += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        where = f"{path}: {first.location}" if first else path
        super().__init__(what, where=where, hint=f"run 'conary recipe check {path}' to list every problem")
        self.path = path
