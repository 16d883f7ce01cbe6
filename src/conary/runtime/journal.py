"""The journal: a changeset's plan on disk before the filesystem is touched.

One file per open transaction, ``var/lib/conary/journal/<txid>.json``, written atomically and
fsynced. Whether the transaction committed is not in the journal but in the database (the state row
carrying the txid), so the two can never disagree. A ``<txid>.post`` marker records that the
post-install scriptlets already ran, so recovery does not run them twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.fsutil import atomic_write_bytes, fsync_dir
from conary.runtime.actions import Action, action_from_json, action_to_json
from conary.runtime.errors import RuntimeStateError

JOURNAL_FORMAT = 1


@dataclass(frozen=True)
class JournalRecord:
    txid: str
    operation: str
    summary: str
    actions: tuple[Action, ...]
    packages: tuple[tuple[int, tuple[str, ...]], ...]  # (manifest id, components) of the target state
    scriptlets_post: tuple[tuple[str, str, str], ...]
    sandbox: str

    def to_bytes(self) -> bytes:
        data = {
            "format": JOURNAL_FORMAT,
            "txid": self.txid,
            "operation": self.operation,
            "summary": self.summary,
            "actions": [action_to_json(a) for a in self.actions],
            "packages": [[m, list(c)] for m, c in self.packages],
            "scriptlets_post": [list(s) for s in self.scriptlets_post],
            "sandbox": self.sandbox,
        }
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> JournalRecord:
        try:
            data: dict[str, Any] = json.loads(raw)
            if data.get("format") != JOURNAL_FORMAT:
                raise RuntimeStateError(
                    f"journal format {data.get('format')} is not {JOURNAL_FORMAT}",
                    where=where,
                    hint="recover with the Conary version that wrote it",
                )
            return cls(
                data["txid"],
                data["operation"],
                data["summary"],
                tuple(action_from_json(a) for a in data["actions"]),
                tuple((int(m), tuple(c)) for m, c in data["packages"]),
                tuple((a, b, c) for a, b, c in data["scriptlets_post"]),
                data["sandbox"],
            )
        except (ValueError, KeyError, TypeError) as err:
            raise RuntimeStateError(f"unreadable journal: {err}", where=where)


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, txid: str) -> Path:
        return self.directory / f"{txid}.json"

    def write(self, record: JournalRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path(record.txid), record.to_bytes(), mode=0o600)

    def pending(self) -> list[JournalRecord]:
        if not self.directory.is_dir():
            return []
        out = []
        for entry in sorted(self.directory.glob("*.json")):
            out.append(JournalRecord.from_bytes(entry.read_bytes(), str(entry)))
        return out

    def mark_post_done(self, txid: str) -> None:
        atomic_write_bytes(self.directory / f"{txid}.post", b"", mode=0o600)

    def post_done(self, txid: str) -> bool:
        return (self.directory / f"{txid}.post").exists()

    def close(self, txid: str) -> None:
        for path in (self.path(txid), self.directory / f"{txid}.post"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        fsync_dir(self.directory)

    def leftovers(self) -> list[Path]:
        """Temporary files of interrupted journal writes (never a live journal)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.startswith("."))
