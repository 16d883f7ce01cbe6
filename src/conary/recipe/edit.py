"""Edit string values in a recipe's TOML text in place, keeping its comments, order and layout.

Re-serialising a recipe would drop its comments and reflow its scripts. These functions change only
the value of one ``key = "..."`` line and leave every other byte alone. They understand enough TOML
to find that line: table headers, comments, and multi-line strings (whose lines are never taken for
keys or headers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conary.errors import InputError

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-]+)\s*\]\s*(?:#.*)?$")
_ARRAY_HEADER = re.compile(r"^\s*\[\[.*\]\]\s*(?:#.*)?$")
_KEY_VALUE = re.compile(
    r"""^(?P<lead>\s*(?P<key>[A-Za-z0-9_\-]+)\s*=\s*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*')(?P<rest>\s*(?:#.*)?)$"""
)


@dataclass(frozen=True)
class _Line:
    table: str | None  # the [table] the line is in; None before the first header or in an [[array]]
    text: str
    in_string: bool  # the line is inside a multi-line string


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    table: str | None = None
    open_quote: str | None = None
    for line in text.splitlines(keepends=True):
        if open_quote is not None:
            out.append(_Line(table, line, True))
            if open_quote in line:
                open_quote = None
            continue
        out.append(_Line(table, line, False))
        stripped = line.strip()
        if _ARRAY_HEADER.match(stripped):
            table = None
            out[-1] = _Line(None, line, False)
            continue
        header = _HEADER.match(stripped)
        if header:
            table = header.group(1)
            out[-1] = _Line(table, line, False)
            continue
        code = "" if stripped.startswith("#") else stripped
        for quote in ('"""', "'''"):
            if code.count(quote) % 2 == 1:
                open_quote = quote
                break
    return out


def get_string(text: str, table: str, key: str) -> str | None:
    """The value of ``key = "..."`` in ``[table]``, or None when there is no such line."""
    for line in _lines(text):
        if line.table == table and not line.in_string:
            found = _KEY_VALUE.match(line.text.rstrip("\r\n"))
            if found and found.group("key") == key:
                return _unquote(found.group("value"))
    return None


def set_string(text: str, table: str, key: str, value: str) -> str:
    """*text* with the value of ``key = "..."`` in ``[table]`` replaced by *value*.

    The quoting style is kept where it can hold the value. Raises InputError when the key is not a
    one-line string in that table (an inline table or a dotted key elsewhere must be edited by hand).
    """
    lines = _lines(text)
    for index, line in enumerate(lines):
        if line.table != table or line.in_string:
            continue
        body = line.text.rstrip("\r\n")
        found = _KEY_VALUE.match(body)
        if not found or found.group("key") != key:
            continue
        quoted = _quote(value, literal=found.group("value").startswith("'"))
        newline = line.text[len(body) :]
        replaced = f"{found.group('lead')}{quoted}{found.group('rest')}{newline}"
        return (
            "".join(item.text for item in lines[:index])
            + replaced
            + "".join(item.text for item in lines[index + 1 :])
        )
    raise InputError(
        f"no line '{key} = \"...\"' in [{table}]",
        where=f"{table}.{key}",
        hint="the value is written in a form this edit does not change; edit it by hand",
    )


def _quote(value: str, *, literal: bool) -> str:
    if literal and "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _unquote(quoted: str) -> str:
    if quoted.startswith("'"):
        return quoted[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), quoted[1:-1])
