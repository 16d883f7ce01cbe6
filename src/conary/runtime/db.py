"""The root's database: SQLite in WAL mode with numbered schema migrations.

Manifests are stored once each (their canonical CBOR, named by sha256), so every state can be
rebuilt exactly. A state is a numbered row plus the (manifest, components) pairs installed in it.
The ``files`` table indexes the current state's tree (one row per path and owner) for queries.
The ``objects`` table indexes the content store's packs (sha256 -> pack, offset, length).
A state row carries the id of the transaction that made it: its presence is the commit point that
crash recovery reads; the objects a changeset added are indexed in that same SQLite transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from conary.ccs import CcsError, Manifest, decode_manifest, encode_manifest
from conary.ccs.manifest import decode_stored_manifest
from conary.runtime.errors import RuntimeStateError
from conary.runtime.model import FileMap, Node, Owned, Selected

# Each entry upgrades the schema from its index to index + 1. Never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE manifests (
        id INTEGER PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        release TEXT NOT NULL,
        arch TEXT NOT NULL,
        signer TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE states (
        number INTEGER PRIMARY KEY,
        created TEXT NOT NULL,
        summary TEXT NOT NULL,
        txid TEXT UNIQUE
    );
    CREATE TABLE state_packages (
        state INTEGER NOT NULL REFERENCES states(number) ON DELETE CASCADE,
        manifest INTEGER NOT NULL REFERENCES manifests(id),
        components TEXT NOT NULL,
        PRIMARY KEY (state, manifest)
    );
    CREATE TABLE files (
        path TEXT NOT NULL,
        package TEXT NOT NULL,
        type TEXT NOT NULL,
        mode INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        target TEXT NOT NULL,
        config INTEGER NOT NULL,
        PRIMARY KEY (path, package)
    );
    CREATE INDEX files_by_package ON files(package);
    """,
    # The content store's index: where each object lives inside a pack (see cas.py).
    """
    CREATE TABLE objects (
        sha256 TEXT PRIMARY KEY,
        pack TEXT NOT NULL,
        offset INTEGER NOT NULL,
        length INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX objects_by_pack ON objects(pack);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class StateInfo:
    number: int
    created: str
    summary: str
    packages: tuple[Selected, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "created": self.created,
            "summary": self.summary,
            "packages": [
                {
                    "name": p.manifest.name,
                    "version": p.manifest.version,
                    "release": p.manifest.release,
                    "arch": p.manifest.arch,
                    "components": list(p.components),
                }
                for p in self.packages
            ],
        }


@dataclass(frozen=True)
class PackedObject:
    """A content store object inside a pack: its compressed frames are LENGTH bytes at OFFSET."""

    sha256: str
    pack: str
    offset: int
    length: int


_BATCH = 500  # bound parameters per statement stay far below SQLite's limit


@lru_cache(maxsize=256)
def _decode(data: bytes) -> Manifest:
    return decode_stored_manifest(data)


def manifest_digest(manifest: Manifest) -> str:
    return hashlib.sha256(encode_manifest(manifest)).hexdigest()


def _now() -> str:
    # SOURCE_DATE_EPOCH, when set, dates the states: an image's root (and its DB) is then reproducible.
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch.isdigit() else None))


class Database:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> Database:
        if not path.exists() and not create:
            raise RuntimeStateError(
                "no Conary database in this root",
                where=str(path),
                hint=f"initialise it with 'conary --root {path.parents[3]} system init'",
            )
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns; crash recovery trusts it as the commit point.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        db = cls(conn, path)
        db._migrate()
        return db

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise RuntimeStateError(
                    f"database schema version {current} is newer than this Conary supports "
                    f"({SCHEMA_VERSION})",
                    where=str(self.path),
                    hint="use the Conary version that last wrote this root",
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        c.execute(statement)
            if row is None:
                c.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            if current == 0:
                c.execute("INSERT INTO states VALUES (0, ?, 'initial empty state', NULL)", (_now(),))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # --- manifests -----------------------------------------------------------------------------

    def store_manifest(self, manifest: Manifest, signer: str, data: bytes | None = None) -> int:
        """The id of MANIFEST, stored if new. DATA, when given, is its canonical encoding (what a
        verified package carries: decoding checks that it re-encodes to exactly these bytes)."""
        data = encode_manifest(manifest) if data is None else data
        digest = hashlib.sha256(data).hexdigest()
        row = self.conn.execute("SELECT id FROM manifests WHERE digest = ?", (digest,)).fetchone()
        if row:
            return int(row[0])
        cur = self.conn.execute(
            "INSERT INTO manifests (digest, name, version, release, arch, signer, data) "
            "VALUES (?,?,?,?,?,?,?)",
            (digest, manifest.name, manifest.version, manifest.release, manifest.arch, signer, data),
        )
        return int(cur.lastrowid or 0)

    def find_manifest(self, manifest: Manifest) -> int | None:
        row = self.conn.execute(
            "SELECT id FROM manifests WHERE digest = ?", (manifest_digest(manifest),)
        ).fetchone()
        return int(row[0]) if row else None

    def manifest(self, manifest_id: int) -> Manifest:
        row = self.conn.execute("SELECT data FROM manifests WHERE id = ?", (manifest_id,)).fetchone()
        if row is None:
            raise RuntimeStateError(f"manifest {manifest_id} is missing", where=str(self.path))
        return _decode(bytes(row[0]))

    def damaged_manifests(self, manifest_ids: Iterable[int]) -> list[tuple[str, str]]:
        """(name, why) for each of MANIFEST_IDS whose stored bytes no longer match their digest or
        no longer pass every check of decode_manifest: the runtime reads them with the fast decoder."""
        out = []
        for manifest_id in manifest_ids:
            row = self.conn.execute(
                "SELECT name, digest, data FROM manifests WHERE id = ?", (manifest_id,)
            ).fetchone()
            name, digest, data = row[0], row[1], bytes(row[2])
            if hashlib.sha256(data).hexdigest() != digest:
                out.append((name, "stored manifest does not match its digest"))
                continue
            try:
                decode_manifest(data)
            except CcsError as err:
                out.append((name, f"stored manifest is invalid: {err}"))
        return out

    # --- states --------------------------------------------------------------------------------

    def current_state(self) -> int:
        return int(self.conn.execute("SELECT MAX(number) FROM states").fetchone()[0])

    def state_numbers(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT number FROM states ORDER BY number")]

    def has_state(self, number: int) -> bool:
        return self.conn.execute("SELECT 1 FROM states WHERE number = ?", (number,)).fetchone() is not None

    def packages_of(self, number: int) -> dict[str, Selected]:
        rows = self.conn.execute(
            "SELECT manifest, components FROM state_packages WHERE state = ? ORDER BY manifest", (number,)
        ).fetchall()
        out = {}
        for manifest_id, components in rows:
            manifest = self.manifest(manifest_id)
            out[manifest.name] = Selected(manifest_id, manifest, tuple(json.loads(components)))
        return dict(sorted(out.items()))

    def installed(self) -> dict[str, Selected]:
        return self.packages_of(self.current_state())

    def state(self, number: int) -> StateInfo:
        row = self.conn.execute("SELECT created, summary FROM states WHERE number = ?", (number,)).fetchone()
        if row is None:
            raise RuntimeStateError(f"no state {number}", hint="see 'conary system state list'")
        return StateInfo(number, row[0], row[1], tuple(self.packages_of(number).values()))

    def states(self) -> list[StateInfo]:
        return [self.state(n) for n in self.state_numbers()]

    def is_committed(self, txid: str) -> bool:
        return self.conn.execute("SELECT 1 FROM states WHERE txid = ?", (txid,)).fetchone() is not None

    def commit_state(
        self,
        txid: str,
        summary: str,
        packages: Iterable[Selected],
        filemap: FileMap,
        objects: Iterable[PackedObject] = (),
    ) -> int:
        """Record the new state, the current tree and the store objects the changeset added, in one
        SQLite transaction: the commit point."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            number = self.current_state() + 1
            c.executemany(
                "INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?)",
                [(o.sha256, o.pack, o.offset, o.length) for o in objects],
            )
            c.execute("INSERT INTO states VALUES (?, ?, ?, ?)", (number, _now(), summary, txid))
            c.executemany(
                "INSERT INTO state_packages VALUES (?, ?, ?)",
                [(number, p.manifest_id, json.dumps(list(p.components))) for p in packages],
            )
            c.execute("DELETE FROM files")
            c.executemany(
                "INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        path,
                        owner,
                        o.node.type,
                        o.node.mode,
                        o.node.uid,
                        o.node.gid,
                        o.node.sha256,
                        o.node.size,
                        o.node.target,
                        int(o.node.config),
                    )
                    for path, o in filemap.entries.items()
                    for owner in o.owners
                ],
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return number

    def current_files(self) -> FileMap:
        grouped: dict[str, tuple[Node, list[str]]] = {}
        for row in self.conn.execute("SELECT * FROM files ORDER BY path, package"):
            path, owner = row[0], row[1]
            if path in grouped:
                grouped[path][1].append(owner)
            else:
                grouped[path] = (
                    Node(row[2], row[3], row[4], row[5], row[6], row[7], row[8], bool(row[9])),
                    [owner],
                )
        return FileMap({p: Owned(n, tuple(o)) for p, (n, o) in grouped.items()})

    def owners_of(self, path: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT package FROM files WHERE path = ?", (path,))]

    # --- retention -----------------------------------------------------------------------------

    def prune_states(self, keep: int) -> list[int]:
        """Forget all but the newest KEEP states (the current one always stays). Returns those dropped."""
        numbers = self.state_numbers()
        drop = numbers[: max(0, len(numbers) - max(keep, 1))]
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("DELETE FROM state_packages WHERE state = ?", [(n,) for n in drop])
            c.executemany("DELETE FROM states WHERE number = ?", [(n,) for n in drop])
            c.execute("DELETE FROM manifests WHERE id NOT IN (SELECT manifest FROM state_packages)")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return drop

    def referenced_objects(self) -> set[str]:
        """sha256 of every file content any retained state needs (all components of its manifests)."""
        wanted: set[str] = set()
        for (data,) in self.conn.execute(
            "SELECT data FROM manifests WHERE id IN (SELECT manifest FROM state_packages)"
        ):
            wanted.update(f.sha256 for f in _decode(bytes(data)).files if f.type == "file")
        return wanted

    def unreferenced_manifests(self) -> int:
        return int(
            self.conn.execute(
                "SELECT COUNT(*) FROM manifests WHERE id NOT IN (SELECT manifest FROM state_packages)"
            ).fetchone()[0]
        )

    # --- the content store's index ---------------------------------------------------------------

    def locate_objects(self, wanted: Iterable[str]) -> dict[str, PackedObject]:
        """Where each of WANTED is packed (those not in any pack are left out)."""
        out: dict[str, PackedObject] = {}
        keys = sorted(set(wanted))
        for i in range(0, len(keys), _BATCH):
            batch = keys[i : i + _BATCH]
            rows = self.conn.execute(
                f"SELECT * FROM objects WHERE sha256 IN ({','.join('?' * len(batch))})", batch
            )
            out.update((row[0], PackedObject(*row)) for row in rows)
        return out

    def packed_objects(self) -> list[PackedObject]:
        rows = self.conn.execute("SELECT * FROM objects ORDER BY pack, offset")
        return [PackedObject(*row) for row in rows]

    def packs(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT DISTINCT pack FROM objects")}

    def reindex_objects(self, drop: Iterable[str], moved: Iterable[PackedObject]) -> None:
        """One transaction: forget objects DROP, point objects MOVED at their new pack."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("DELETE FROM objects WHERE sha256 = ?", [(s,) for s in drop])
            c.executemany(
                "UPDATE objects SET pack = ?, offset = ?, length = ? WHERE sha256 = ?",
                [(o.pack, o.offset, o.length, o.sha256) for o in moved],
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def drop_unreferenced_manifests(self) -> int:
        cur = self.conn.execute("DELETE FROM manifests WHERE id NOT IN (SELECT manifest FROM state_packages)")
        return cur.rowcount
