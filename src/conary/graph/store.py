"""The checkpoint store: SQLite in WAL mode, one row per built package, committed the moment its
.ccs is in the output repository.

A row maps a derivation key to the package (its file name in the repository and a kept copy named
by the key, so a later rebuild of the same name cannot change what an old key points to), its output
digest, the key's text, the seconds it took and its log. `latest` names each package's newest
checkpoint, which is what early cutoff and `why` compare against. `cooks` records every cook as it
starts, so "no checkpointed package was cooked again" can be counted from the store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.graph.errors import StoreError

STORE_FORMAT = 1
DB_NAME = "checkpoints.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    release TEXT NOT NULL,
    package TEXT NOT NULL,          -- file name in the output repository
    package_sha256 TEXT NOT NULL,
    output_digest TEXT NOT NULL,
    key_text TEXT NOT NULL,
    seconds REAL NOT NULL,
    log TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS latest (name TEXT PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cooks (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    log TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS recipe_cache (
    context TEXT NOT NULL,
    path TEXT NOT NULL,
    signature TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (context, path)
);
CREATE TABLE IF NOT EXISTS package_cache (
    path TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    output_digest TEXT NOT NULL,
    provides TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS running (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    step TEXT NOT NULL,
    started REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Checkpoint:
    key: str
    name: str
    version: str
    release: str
    package: str
    package_sha256: str
    output_digest: str
    key_text: str
    seconds: float
    log: str
    created: float


@dataclass(frozen=True)
class Running:
    name: str
    key: str
    step: str
    started: float


_COLUMNS = (
    "key, name, version, release, package, package_sha256, output_digest, key_text, seconds, log, created"
)


class CheckpointStore:
    """One connection to the store in DIR (created on first use). Each process opens its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DB_NAME
        try:
            self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the next package starts, so a checkpoint survives a
            # power loss as well as a kill.
            self.db.execute("PRAGMA synchronous=FULL")
            self._init_schema()
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"checkpoint store cannot be opened: {err}",
                where=str(self.path),
                hint="move the damaged store aside; the packages will be built again",
            ) from None

    def _init_schema(self) -> None:
        # user_version holds the format once the schema is in place: an open of a ready store is
        # one read, not a schema script and a write transaction (a no-op run opens it once).
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == STORE_FORMAT:
            return
        self._check_format(version)
        self.db.executescript(_SCHEMA)  # idempotent; executescript commits on its own
        with self.transaction():
            row = self.db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('format', ?)", (str(STORE_FORMAT),))
            elif int(row[0]) > STORE_FORMAT:
                raise StoreError(
                    f"checkpoint store has format {row[0]}; this Conary reads format {STORE_FORMAT}",
                    where=str(self.path),
                    hint="use a newer Conary, or another --state directory",
                )
            self.db.execute(f"PRAGMA user_version = {STORE_FORMAT}")

    def _check_format(self, version: int) -> None:
        if version > STORE_FORMAT:
            raise StoreError(
                f"checkpoint store has format {version}; this Conary reads format {STORE_FORMAT}",
                where=str(self.path),
                hint="use a newer Conary, or another --state directory",
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def transaction(self) -> CheckpointStore._Tx:
        return CheckpointStore._Tx(self.db)

    # ----------------------------------------------------------------- reads

    def get(self, key: str) -> Checkpoint | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM checkpoints WHERE key = ?", (key,)).fetchone()
        return None if row is None else Checkpoint(*row)

    def latest(self, name: str) -> Checkpoint | None:
        row = self.db.execute(
            f"SELECT {', '.join('c.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM latest l JOIN checkpoints c ON c.key = l.key WHERE l.name = ?",
            (name,),
        ).fetchone()
        return None if row is None else Checkpoint(*row)

    def all_latest(self) -> dict[str, Checkpoint]:
        cols = ", ".join("c." + c.strip() for c in _COLUMNS.split(","))
        rows = self.db.execute(f"SELECT {cols} FROM latest l JOIN checkpoints c ON c.key = l.key")
        return {row[1]: Checkpoint(*row) for row in rows}

    def keys(self, keys: Iterable[str]) -> dict[str, Checkpoint]:
        """The checkpoints of those *keys* that have one (one query for the lot)."""
        wanted = list(keys)
        out: dict[str, Checkpoint] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM checkpoints WHERE key IN ({marks})", part)
            out.update((row[0], Checkpoint(*row)) for row in rows)
        return out

    def durations(self) -> dict[str, float]:
        """Each package's last build time in seconds (for the order's weights and the ETA)."""
        rows = self.db.execute("SELECT l.name, c.seconds FROM latest l JOIN checkpoints c ON c.key = l.key")
        return dict(rows)

    def latest_digests(self) -> dict[str, str]:
        """Each package's newest output digest."""
        rows = self.db.execute(
            "SELECT l.name, c.output_digest FROM latest l JOIN checkpoints c ON c.key = l.key"
        )
        return dict(rows)

    def checkpoints_of(self, names: Iterable[str]) -> dict[str, Checkpoint]:
        """key -> checkpoint of every checkpoint of the packages NAMES (one query)."""
        wanted = set(names)
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM checkpoints")
        return {row[0]: Checkpoint(*row) for row in rows if row[1] in wanted}

    def cooks(self) -> list[tuple[str, str, float]]:
        """(key, name, started) of every cook ever started, oldest first."""
        return list(self.db.execute("SELECT key, name, started FROM cooks ORDER BY id"))

    def running(self) -> list[Running]:
        return [Running(*row) for row in self.db.execute("SELECT name, key, step, started FROM running")]

    def failure(self, name: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT key, log FROM failures WHERE name = ?", (name,)).fetchone()
        return None if row is None else (row[0], row[1])

    def failures(self) -> dict[str, tuple[str, str]]:
        return {row[0]: (row[1], row[2]) for row in self.db.execute("SELECT name, key, log FROM failures")}

    def last_request(self) -> dict[str, Any]:
        """What the last build with this store was given (recipes, seed, stage, toolchain), so
        `build why NAME` can recompute keys the same way without being told again."""
        row = self.db.execute("SELECT value FROM meta WHERE name = 'request'").fetchone()
        return dict(json.loads(row[0])) if row else {}

    def set_request(self, request: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('request', ?)", (json.dumps(request),))

    def snapshot(self, slot: str) -> dict[str, Any] | None:
        """The last complete run's snapshot for SLOT (one per stage and repository)."""
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (f"snapshot:{slot}",)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def set_snapshot(self, slot: str, snapshot: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"snapshot:{slot}", json.dumps(snapshot))
            )

    def package_cache(self) -> dict[str, tuple[str, str, str]]:
        """path -> (stat signature, output digest, provides as JSON) of seed and base packages."""
        rows = self.db.execute("SELECT path, signature, output_digest, provides FROM package_cache")
        return {path: (sig, digest, provides) for path, sig, digest, provides in rows}

    def put_package_cache(self, entries: list[tuple[str, str, str, str]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO package_cache VALUES (?, ?, ?, ?)", entries)

    def recipe_cache(self, context: str) -> dict[str, tuple[str, str]]:
        """path -> (stat signature, JSON) of the recipes read before for *context*."""
        rows = self.db.execute("SELECT path, signature, data FROM recipe_cache WHERE context = ?", (context,))
        return {path: (sig, data) for path, sig, data in rows}

    def put_recipe_cache(self, context: str, entries: list[tuple[str, str, str]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO recipe_cache VALUES (?, ?, ?, ?)",
                [(context, path, sig, data) for path, sig, data in entries],
            )

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    # ----------------------------------------------------------------- writes

    def cook_started(self, name: str, key: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO cooks (key, name, started) VALUES (?, ?, ?)", (key, name, time.time()))
            db.execute("INSERT OR REPLACE INTO running VALUES (?, ?, ?, ?)", (name, key, "", time.time()))

    def step(self, name: str, step: str) -> None:
        """The step a running package is at, for the live view (not durable: no fsync needed)."""
        self.db.execute("UPDATE running SET step = ? WHERE name = ?", (step, name))

    def commit(self, checkpoint: Checkpoint) -> None:
        """Record a built package: its row, its name's latest pointer, and no longer running."""
        with self.transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO checkpoints ({_COLUMNS}) VALUES ({','.join('?' * 11)})",
                (
                    checkpoint.key,
                    checkpoint.name,
                    checkpoint.version,
                    checkpoint.release,
                    checkpoint.package,
                    checkpoint.package_sha256,
                    checkpoint.output_digest,
                    checkpoint.key_text,
                    checkpoint.seconds,
                    checkpoint.log,
                    checkpoint.created,
                ),
            )
            db.execute("INSERT OR REPLACE INTO latest VALUES (?, ?)", (checkpoint.name, checkpoint.key))
            db.execute("DELETE FROM running WHERE name = ?", (checkpoint.name,))
            db.execute("DELETE FROM failures WHERE name = ?", (checkpoint.name,))

    def failed(self, name: str, key: str, log: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)", (name, key, log, time.time()))
            db.execute("DELETE FROM running WHERE name = ?", (name,))

    def clear_running(self) -> None:
        """At the start of a run nothing is running: rows left by a killed run are stale."""
        with self.transaction() as db:
            db.execute("DELETE FROM running")


def packages_dir(state: Path) -> Path:
    """Where the store keeps one copy of each checkpointed package, named by its key."""
    return Path(state) / "packages"


def kept_package(state: Path, key: str) -> Path:
    return packages_dir(state) / f"{key}.ccs"


def iter_kept(state: Path) -> Iterator[Path]:
    directory = packages_dir(state)
    if directory.is_dir():
        for name in sorted(os.listdir(directory)):
            if name.endswith(".ccs"):
                yield directory / name
