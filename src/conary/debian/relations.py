"""Debian package relationships (Depends, Pre-Depends, Provides) as CCS package dependencies.

CCS requirements are single capabilities matched by (kind, name), with a version constraint kept
as text. So:
- a relationship with one alternative becomes ``package(NAME) OP VERSION`` (``>= 2.34``; Debian's
  ``>>`` and ``<<`` are kept as written);
- a relationship with alternatives (``a | b``) has no CCS form and is left out of the requirements;
  the control fields are kept whole in the provenance;
- architecture qualifiers (``python3:any``) are dropped: a root holds one architecture per name;
- a Provides entry becomes ``package(NAME)`` with its version (``= 1.2`` gives ``1.2``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conary.ccs import Dependency

_RELATION = re.compile(
    r"^\s*(?P<name>[a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*"
    r"(?:\(\s*(?P<op><<|<=|=|>=|>>|<|>)\s*(?P<version>[^)\s]+)\s*\))?\s*"
    r"(?:\[[^\]]*\])?\s*(?:<[^>]*>\s*)*$"
)


@dataclass(frozen=True)
class Relation:
    name: str
    op: str = ""
    version: str = ""


def parse_relations(text: str) -> list[list[Relation]]:
    """A Depends-style field as groups of alternatives; malformed parts are skipped."""
    groups = []
    for group in text.replace("\n", " ").split(","):
        alternatives = []
        for alternative in group.split("|"):
            match = _RELATION.match(alternative)
            if match and match.group("name"):
                op = match.group("op") or ""
                # Old dpkg spellings: "<" means "<=", ">" means ">=".
                op = {"<": "<=", ">": ">="}.get(op, op)
                alternatives.append(Relation(match.group("name"), op, match.group("version") or ""))
        if alternatives:
            groups.append(alternatives)
    return groups


def requirements(*fields: str) -> tuple[list[Dependency], list[str]]:
    """Package requirements of Depends-style *fields*, and the alternative groups left out (as text)."""
    kept: list[Dependency] = []
    dropped: list[str] = []
    for text in fields:
        for group in parse_relations(text):
            if len(group) == 1:
                rel = group[0]
                kept.append(Dependency("package", rel.name, f"{rel.op} {rel.version}" if rel.op else ""))
            else:
                dropped.append(" | ".join(_render(r) for r in group))
    return kept, dropped


def provides(text: str) -> list[Dependency]:
    out = []
    for group in parse_relations(text):
        for rel in group:
            out.append(Dependency("package", rel.name, rel.version if rel.op == "=" else ""))
    return out


def _render(rel: Relation) -> str:
    return f"{rel.name} ({rel.op} {rel.version})" if rel.op else rel.name
