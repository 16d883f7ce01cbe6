"""The shape of a recipe file: every section, key and type, checked generically.

`Validator.table` walks the parsed TOML against SCHEMA and reports unknown keys (with a "did
you mean"), missing required keys and wrong types. A value that failed is kept as INVALID, so the
later rules still know the key was given; `get` reads a value, treating INVALID as absent.
Meaning-level rules (one of archive/path, strip >= 0, ...) live in conary.recipe.loader.
"""

from __future__ import annotations

import datetime
import difflib
from dataclasses import dataclass
from typing import Any

from conary.recipe.checksum import MD5_WARNING, WEAK_ALGORITHMS, ChecksumSyntaxError, parse_checksum
from conary.recipe.model import COMPONENT_NAMES, CROSS_TOOLS, STEP_NAMES
from conary.recipe.problems import Problem


@dataclass(frozen=True)
class Field:
    """kind: str, bool, int, strlist, strmap, checksum, table (one) or tables (an array of them)."""

    kind: str
    required: bool = False
    spec: dict[str, Field] | None = None


def _strs(*names: str) -> dict[str, Field]:
    return {name: Field("str") for name in names}


SCHEMA: dict[str, Field] = {
    "package": Field(
        "table",
        required=True,
        spec={
            "name": Field("str", required=True),
            "version": Field("str", required=True),
            **_strs("release", "summary", "description", "license", "homepage"),
        },
    ),
    "source": Field(
        "table",
        required=True,
        spec={
            **_strs("archive", "path", "signature", "extract_dir", "debian"),
            "checksum": Field("checksum"),
            "extract": Field("bool"),
            "additional": Field(
                "tables",
                spec={
                    "url": Field("str", required=True),
                    "checksum": Field("checksum", required=True),
                    "extract": Field("bool"),
                    "extract_to": Field("str"),
                    "debian": Field("str"),
                },
            ),
        },
    ),
    "build": Field(
        "table",
        spec={
            "requires": Field("strlist"),
            "makedepends": Field("strlist"),
            **_strs(*STEP_NAMES, "workdir", "stage"),
            "environment": Field("strmap"),
            "jobs": Field("int"),
            "timeout": Field("int"),
            "chroot": Field("bool"),
            "check_optional": Field("bool"),
            "sanity_check": Field("table", spec={"script": Field("str", required=True)}),
        },
    ),
    "cross": Field(
        "table", spec=_strs("target", "sysroot", "cross_tools", "stage", "tool_prefix", *CROSS_TOOLS)
    ),
    "patches": Field(
        "table",
        spec={
            "files": Field(
                "tables",
                spec={
                    "file": Field("str", required=True),
                    "checksum": Field("checksum"),
                    "strip": Field("int"),
                },
            )
        },
    ),
    "components": Field("table", spec={name: Field("strlist") for name in COMPONENT_NAMES}),
    "variables": Field("strmap"),
    "deviations": Field(
        "table",
        spec={
            **_strs("lfs_section", "lfs_url"),
            "changes": Field(
                "tables",
                spec={
                    "flag": Field("str", required=True),
                    "reason": Field("str", required=True),
                    **_strs("lfs", "conary"),
                },
            ),
        },
    ),
}

# Keys Conary's own trees know that this tool deliberately does not run; say so instead of
# a bare "unknown key".
UNSUPPORTED = {
    "build.script_file": "Lua build scripts are not supported; write the steps inline",
    "patches.files[].condition": "conditional patches are not supported; list the patches that apply",
}


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return type(value).__name__


_EXPECTED = {
    "str": "a string",
    "bool": "a boolean",
    "int": "an integer",
    "strlist": "an array of strings",
    "strmap": "a table of strings",
    "checksum": "a string",
    "table": "a table",
    "tables": "an array of tables",
}


def join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


class Validator:
    """Collects problems for one file while walking its parsed TOML."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.errors = 0

    def error(self, key_path: str, message: str) -> None:
        self.errors += 1
        self.problems.append(Problem(self.path, "error", key_path, message))

    def warning(self, key_path: str, message: str) -> None:
        self.problems.append(Problem(self.path, "warning", key_path, message))

    def wrong_type(self, key_path: str, kind: str, value: Any) -> None:
        self.error(key_path, f"expected {_EXPECTED[kind]}, got {type_name(value)}")

    def unknown_key(
        self, key_path: str, key: str, allowed: dict[str, Field], generic: str, value: Any
    ) -> None:
        special = UNSUPPORTED.get(generic)
        if special:
            self.error(key_path, f"unsupported key '{key}': {special}")
            return
        top = key_path == key
        noun = "section" if top and isinstance(value, dict) else "key"
        close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
        if close:
            self.error(key_path, f"unknown {noun} '{key}' (did you mean '{close[0]}'?)")
            return
        owner = _owning_section(key) if top else None
        if owner:
            self.error(key_path, f"unknown {noun} '{key}' (it belongs in [{owner}])")
        else:
            self.error(key_path, f"unknown {noun} '{key}' (expected one of: {', '.join(allowed)})")

    def table(self, raw: Any, spec: dict[str, Field], key_path: str, generic: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.wrong_type(key_path, "table", raw)
            return None
        out: dict[str, Any] = {}
        for key, value in raw.items():
            child_path = join(key_path, key)
            child_generic = join(generic, key)
            field = spec.get(key)
            if field is None:
                self.unknown_key(child_path, key, spec, child_generic, value)
                continue
            # A value that failed keeps its key (as INVALID) so later rules know it was given.
            out[key] = self.value(value, field, child_path, child_generic)
        for key, field in spec.items():
            if field.required and key not in raw:
                if field.kind == "table":
                    self.error(join(key_path, key), f"missing required section [{join(key_path, key)}]")
                else:
                    self.error(join(key_path, key), f"missing required key '{key}'")
        return out

    def value(self, value: Any, field: Field, key_path: str, generic: str) -> Any:
        kind = field.kind
        if kind == "str":
            if isinstance(value, str):
                return value
        elif kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif kind == "checksum":
            if isinstance(value, str):
                try:
                    checksum = parse_checksum(value)
                except ChecksumSyntaxError as err:
                    self.error(key_path, str(err))
                    return _INVALID
                if checksum.algo in WEAK_ALGORITHMS:
                    self.warning(key_path, MD5_WARNING)
                if not checksum.hexdigest.strip("0"):
                    self.warning(
                        key_path, "placeholder checksum (all zeros): replace it with the real digest"
                    )
                return checksum
        elif kind == "strlist":
            if isinstance(value, list):
                items = []
                for i, item in enumerate(value):
                    if not isinstance(item, str):
                        self.wrong_type(f"{key_path}[{i}]", "str", item)
                    elif not item.strip():
                        self.error(f"{key_path}[{i}]", "must not be empty")
                    else:
                        items.append(item)
                return tuple(items)
        elif kind == "strmap":
            if isinstance(value, dict):
                pairs = []
                for key, item in value.items():
                    if isinstance(item, str):
                        pairs.append((key, item))
                    else:
                        self.wrong_type(join(key_path, key), "str", item)
                return tuple(pairs)
        elif kind == "table":
            assert field.spec is not None
            table = self.table(value, field.spec, key_path, generic)
            return _INVALID if table is None else table
        elif kind == "tables":
            assert field.spec is not None
            if isinstance(value, list):
                rows = []
                for i, item in enumerate(value):
                    row = self.table(item, field.spec, f"{key_path}[{i}]", f"{generic}[]")
                    if row is not None:
                        rows.append((i, row))
                return rows
        self.wrong_type(key_path, kind, value)
        return _INVALID


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


# Marks a value that failed its check; the problem is already recorded.
_INVALID: Any = _Invalid()
INVALID = _INVALID


def get(table: dict[str, Any], key: str, default: Any = None) -> Any:
    """The checked value of *key*, or *default* when it is absent or failed its check."""
    value = table.get(key, default)
    return default if value is _INVALID else value


def valid_items(table: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if v is not _INVALID}


def _owning_section(key: str) -> str | None:
    for section, field in SCHEMA.items():
        if field.spec and key in field.spec:
            return section
    return None
