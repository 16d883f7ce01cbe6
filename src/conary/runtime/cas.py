"""The root's content store: one object per distinct file content, named by its sha256.

An object holds a file's content as a sequence of zstd frames: exactly the compressed chunks the
package carried, copied without recompressing. So filling the store costs no compression and writes
the compressed size, while restoring, verifying or rolling back a file reads one object (decompress
and write, or decompress and hash). A content already present is never written again.

Objects live in **packs**, ``<root>/conary/objects/packs/<name>.pack``: a changeset appends the
objects it adds to one new pack per staging worker, so filling the store costs one file creation
per worker instead of one per content. The database's ``objects`` table is the index (sha256 ->
pack, offset, length); a changeset's rows are written in the same SQLite transaction as its state,
after the syncfs that makes the pack durable, so an object is in the store exactly when the commit
that added it happened. A pack no index row names is a leftover of an interrupted changeset (or gc)
and is deleted by recovery and by gc. Packs are never modified: gc deletes a pack none of whose
objects is needed and rewrites (repacks) one that is partly needed.

Roots written before packs existed hold *loose* objects, one file each at ``objects/aa/rest``;
they are still read, checked and collected, never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from conary.runtime.db import Database, PackedObject
from conary.runtime.errors import MissingContentError

_BLOCK = 1 << 20
PACK_SUFFIX = ".pack"


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    path: Path  # the loose file, or the pack holding it
    size: int  # bytes on disk (compressed)


@dataclass(frozen=True)
class Location:
    """Where an object's frames are: LENGTH bytes at OFFSET of PATH, or all of PATH (a loose object)."""

    path: str
    offset: int = 0
    length: int | None = None


class CorruptObject(Exception):
    """An object's bytes end early or do not decompress to the content its name promises."""


class ContentStore:
    def __init__(
        self, directory: Path, db: Database | None = None, on_mutation: Callable[[], None] | None = None
    ) -> None:
        self.directory = directory
        self.tmp = directory / "tmp"
        self.packs = directory / "packs"
        self.db = db
        self._on_mutation = on_mutation or (lambda: None)

    def path(self, sha256: str) -> Path:
        """Where a loose object would be."""
        return self.directory / sha256[:2] / sha256[2:]

    # --- finding objects (main thread: the index is in the database) ------------------------------

    def locate(self, wanted: Iterable[str]) -> dict[str, Location]:
        """The location of each object of WANTED that the store holds."""
        wanted = set(wanted)
        found: dict[str, Location] = {}
        if self.db is not None:
            for sha256, obj in self.db.locate_objects(wanted).items():
                found[sha256] = Location(str(self.packs / obj.pack), obj.offset, obj.length)
        if self._has_loose():
            for sha256 in wanted - found.keys():
                loose = self.path(sha256)
                if os.path.exists(loose):
                    found[sha256] = Location(str(loose))
        return found

    def _has_loose(self) -> bool:
        try:
            return any(len(name) == 2 for name in os.listdir(self.directory))
        except FileNotFoundError:
            return False

    def has(self, sha256: str) -> bool:
        return sha256 in self.locate([sha256])

    def missing_error(self, sha256: str) -> MissingContentError:
        return MissingContentError(
            "object missing from the content store",
            where=f"object {sha256}",
            hint="reinstall the package from its .ccs file to bring the content back",
        )

    # --- reading (any thread) -----------------------------------------------------------------------

    def read_at(self, location: Location) -> Iterator[bytes]:
        """The content at LOCATION, decompressed, block by block. A missing file raises
        FileNotFoundError; bytes that end early or do not decompress raise CorruptObject."""
        fd = os.open(location.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if location.length is None:
                source: _Range | _File = _File(fd)
            else:
                source = _Range(fd, location.offset, location.length)
            reader = zstandard.ZstdDecompressor().stream_reader(
                source, read_across_frames=True, closefd=False
            )
            try:
                while block := reader.read(_BLOCK):
                    yield block
            except zstandard.ZstdError as err:
                raise CorruptObject(str(err)) from err
            if source.truncated():
                raise CorruptObject("object ends early")
        finally:
            os.close(fd)

    def copy_from(self, location: Location, sha256: str, dst_fd: int) -> None:
        """Write object SHA256 from LOCATION into DST_FD, checking that it hashes to its name."""
        digest = hashlib.sha256()
        try:
            for block in self.read_at(location):
                digest.update(block)
                write_all(dst_fd, block)
        except FileNotFoundError:
            raise self.missing_error(sha256)
        except CorruptObject:
            raise self.corrupt_error(sha256)
        if digest.hexdigest() != sha256:
            raise self.corrupt_error(sha256)

    def corrupt_error(self, sha256: str) -> MissingContentError:
        return MissingContentError(
            "content store object is corrupt",
            where=f"object {sha256}",
            hint="reinstall the package from its .ccs file to bring the content back",
        )

    def copy_into(self, sha256: str, dst_fd: int) -> None:
        """Write the content of object SHA256 into the open file DST_FD (main thread)."""
        location = self.locate([sha256]).get(sha256)
        if location is None:
            raise self.missing_error(sha256)
        self.copy_from(location, sha256, dst_fd)

    def check(self, sha256: str, location: Location | None = None) -> str | None:
        """None if the object exists and its content hashes to its name; otherwise what is wrong."""
        location = location or self.locate([sha256]).get(sha256)
        if location is None:
            return "missing from the content store"
        digest = hashlib.sha256()
        try:
            for data in self.read_at(location):
                digest.update(data)
        except FileNotFoundError:
            return "missing from the content store"
        except CorruptObject:
            return "content store object is corrupt"
        if digest.hexdigest() != sha256:
            return "content store object is corrupt"
        return None

    # --- writing ------------------------------------------------------------------------------------

    def new_pack(self, name: str) -> PackWriter:
        """Create the pack NAME for a changeset's new objects (its index rows come with the commit)."""
        self.packs.mkdir(mode=0o755, exist_ok=True)
        writer = PackWriter(self.packs / f"{name}{PACK_SUFFIX}")
        self._on_mutation()
        return writer

    def unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            self._on_mutation()

    # --- listing and collecting ---------------------------------------------------------------------

    def _loose(self) -> Iterator[StoredObject]:
        if not self.directory.is_dir():
            return
        for prefix in sorted(os.listdir(self.directory)):
            if len(prefix) != 2:
                continue
            sub = self.directory / prefix
            for rest in sorted(os.listdir(sub)):
                path = sub / rest
                yield StoredObject(prefix + rest, path, path.lstat().st_size)

    def objects(self) -> Iterator[StoredObject]:
        yield from self._loose()
        if self.db is not None:
            for obj in self.db.packed_objects():
                yield StoredObject(obj.sha256, self.packs / obj.pack, obj.length)

    def collect(self, wanted: set[str], *, dry_run: bool = False) -> tuple[int, int]:
        """Delete every object not in WANTED. Returns (objects, bytes freed).

        A pack whose objects are all unwanted is deleted; one that still holds wanted objects is
        rewritten with only those (new pack written and made durable, index switched in one SQLite
        transaction, old pack deleted), so a crash at any point leaves every wanted object indexed
        and readable, and at worst an unreferenced pack that the next gc or recovery deletes.
        """
        count = freed = 0
        for obj in list(self._loose()):
            if obj.sha256 not in wanted:
                count += 1
                freed += obj.size
                if not dry_run:
                    self.unlink(obj.path)
        if self.db is None:
            return count, freed
        by_pack: dict[str, list[PackedObject]] = {}
        for packed in self.db.packed_objects():
            by_pack.setdefault(packed.pack, []).append(packed)
        for pack, members in sorted(by_pack.items()):
            dead = [m for m in members if m.sha256 not in wanted]
            if not dead:
                continue
            live = [m for m in members if m.sha256 in wanted]
            count += len(dead)
            path = self.packs / pack
            with contextlib.suppress(FileNotFoundError):
                freed += path.stat().st_size - sum(m.length for m in live)
            if dry_run:
                continue
            moved = self._repack(path, live) if live else []
            self.db.reindex_objects([m.sha256 for m in dead], moved)
            self.unlink(path)
        return count, freed

    def _repack(self, old: Path, live: list[PackedObject]) -> list[PackedObject]:
        writer = self.new_pack(f"gc-{secrets.token_hex(6)}")
        moved = []
        try:
            src = os.open(old, os.O_RDONLY | os.O_CLOEXEC)
            try:
                for obj in live:
                    start = writer.offset
                    writer.write(os.pread(src, obj.length, obj.offset))
                    moved.append(writer.record(obj.sha256, start))
            finally:
                os.close(src)
            os.fsync(writer.fd)
        finally:
            writer.close()
        fd = os.open(self.packs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return moved

    def leftovers(self) -> list[Path]:
        """Files an interrupted changeset or gc left behind: temporary files and packs no index row
        names (call only under the root's lock, when no changeset is writing)."""
        out = sorted(self.tmp.iterdir()) if self.tmp.is_dir() else []
        if self.packs.is_dir():
            indexed = self.db.packs() if self.db is not None else set()
            out += sorted(p for p in self.packs.iterdir() if p.name not in indexed)
        return out


class PackWriter:
    """Appends objects to one new pack. Not shared between threads: one per staging worker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        self.offset = 0
        self.added: list[PackedObject] = []

    def write(self, frames: bytes) -> None:
        write_all(self.fd, frames)
        self.offset += len(frames)

    def record(self, sha256: str, start: int) -> PackedObject:
        """Note that the bytes written since offset START are object SHA256."""
        obj = PackedObject(sha256, self.name, start, self.offset - start)
        self.added.append(obj)
        return obj

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Range:
    """A file-like view of LENGTH bytes at OFFSET of an open file (for the zstd stream reader)."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd = fd
        self.pos = offset
        self.left = length
        self.short = False

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        if size <= 0:
            return b""
        data = os.pread(self.fd, size, self.pos)
        if not data:
            self.short = True
        self.pos += len(data)
        self.left -= len(data)
        return data

    def truncated(self) -> bool:
        return self.short or self.left > 0


class _File:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int = -1) -> bytes:
        return os.read(self.fd, size if size >= 0 else _BLOCK)

    def truncated(self) -> bool:
        return False


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
