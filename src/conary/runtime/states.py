"""System states: listing them and comparing two."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from conary.errors import InputError
from conary.runtime.db import StateInfo
from conary.runtime.model import build_filemap
from conary.runtime.session import open_root


def list_states(root: str | os.PathLike[str]) -> list[StateInfo]:
    with open_root(root) as session:
        return session.db.states()


@dataclass(frozen=True)
class StateDiff:
    a: int
    b: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[tuple[str, str], ...]
    files_added: tuple[str, ...]
    files_removed: tuple[str, ...]
    files_changed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.a,
            "to": self.b,
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [{"from": x, "to": y} for x, y in self.changed],
            "files_added": list(self.files_added),
            "files_removed": list(self.files_removed),
            "files_changed": list(self.files_changed),
        }


def diff_states(root: str | os.PathLike[str], a: int, b: int) -> StateDiff:
    with open_root(root) as session:
        for n in (a, b):
            if not session.db.has_state(n):
                # The same error as rollback's: a state number that does not exist is bad input.
                raise InputError(
                    f"no state {n}", where=str(session.root), hint="see 'conary system state list'"
                )
        pa, pb = session.db.packages_of(a), session.db.packages_of(b)
        fa, fb = build_filemap(pa.values()), build_filemap(pb.values())
    added = tuple(pb[n].label for n in sorted(set(pb) - set(pa)))
    removed = tuple(pa[n].label for n in sorted(set(pa) - set(pb)))
    changed = tuple(
        (pa[n].label, pb[n].label)
        for n in sorted(set(pa) & set(pb))
        if (pa[n].manifest_id, pa[n].components) != (pb[n].manifest_id, pb[n].components)
    )
    paths_a, paths_b = fa.paths(), fb.paths()
    files_changed = tuple(
        sorted(p for p in paths_a & paths_b if not fa.entries[p].node.same(fb.entries[p].node))
    )
    return StateDiff(
        a,
        b,
        added,
        removed,
        changed,
        tuple(sorted(paths_b - paths_a)),
        tuple(sorted(paths_a - paths_b)),
        files_changed,
    )
