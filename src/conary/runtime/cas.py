"""The root's content store: one object per distinct file content, named by its sha256.

Objects are whole files (not chunks), stored uncompressed at ``<root>/conary/objects/aa/rest``:
restoring, verifying or rolling back a file is one copy of one object, and an installed file can be
checked against the store by comparing hashes. A content already present is never written again.
New objects are written to ``objects/tmp`` and renamed into place; their durability comes from the
transaction's syncfs before anything refers to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conary.fsutil import fsync_dir
from conary.runtime.errors import MissingContentError

_COPY_CHUNK = 1 << 30


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    path: Path
    size: int


class ContentStore:
    def __init__(self, directory: Path, on_mutation: Callable[[], None] | None = None) -> None:
        self.directory = directory
        self.tmp = directory / "tmp"
        self._on_mutation = on_mutation or (lambda: None)
        self._made_dirs: set[str] = set()

    def path(self, sha256: str) -> Path:
        return self.directory / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    def _prefix_dir(self, sha256: str) -> Path:
        prefix = sha256[:2]
        directory = self.directory / prefix
        if prefix not in self._made_dirs:
            directory.mkdir(mode=0o755, exist_ok=True)
            self._made_dirs.add(prefix)
        return directory

    def put(
        self, sha256: str, data: Iterable[bytes], *, durable: bool = False, verified: bool = False
    ) -> bool:
        """Store DATA as object SHA256 unless present. Returns True if it was written.

        The bytes are hashed while written (unless VERIFIED: the source already checked every piece
        against the signed manifest); a mismatch leaves nothing behind. With DURABLE the object is
        fsynced at once (callers outside a transaction); otherwise the transaction's syncfs does it.
        """
        if self.has(sha256):
            return False
        self.tmp.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = self.tmp / f"{secrets.token_hex(8)}.part"
        digest = hashlib.sha256()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            for block in data:
                if not verified:
                    digest.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            if not verified and digest.hexdigest() != sha256:
                raise MissingContentError(
                    f"content does not match its hash (got {digest.hexdigest()})", where=f"object {sha256}"
                )
            if durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        target = self._prefix_dir(sha256) / sha256[2:]
        os.rename(tmp, target)
        if durable:
            fsync_dir(target.parent)
        self._on_mutation()
        return True

    def new_tmp(self) -> tuple[Path, int]:
        """A fresh temporary object file (path, descriptor open for writing)."""
        self.tmp.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = self.tmp / f"{secrets.token_hex(8)}.part"
        return tmp, os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)

    def adopt(self, tmp: Path, sha256: str) -> None:
        """Rename a completed temporary object into place (its durability is the caller's)."""
        os.rename(tmp, self._prefix_dir(sha256) / sha256[2:])
        self._on_mutation()

    def open(self, sha256: str) -> int:
        try:
            return os.open(self.path(sha256), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MissingContentError(
                "object missing from the content store",
                where=f"object {sha256}",
                hint="reinstall the package from its .ccs file to bring the content back",
            )

    def copy_into(self, sha256: str, dst_fd: int) -> None:
        """Copy object SHA256 into the open file DST_FD (in-kernel where possible)."""
        src = self.open(sha256)
        try:
            copy_fd(src, dst_fd)
        finally:
            os.close(src)

    def read_chunks(self, sha256: str, block: int = 1 << 20) -> Iterator[bytes]:
        fd = self.open(sha256)
        try:
            while data := os.read(fd, block):
                yield data
        finally:
            os.close(fd)

    def check(self, sha256: str) -> str | None:
        """None if the object exists and hashes to its name; otherwise what is wrong."""
        if not self.has(sha256):
            return "missing from the content store"
        digest = hashlib.sha256()
        for data in self.read_chunks(sha256):
            digest.update(data)
        if digest.hexdigest() != sha256:
            return "content store object is corrupt"
        return None

    def objects(self) -> Iterator[StoredObject]:
        if not self.directory.is_dir():
            return
        for prefix in sorted(os.listdir(self.directory)):
            if len(prefix) != 2:
                continue
            sub = self.directory / prefix
            for rest in sorted(os.listdir(sub)):
                path = sub / rest
                yield StoredObject(prefix + rest, path, path.lstat().st_size)

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(sha256))

    def leftovers(self) -> list[Path]:
        """Temporary files an interrupted write left behind."""
        return sorted(self.tmp.iterdir()) if self.tmp.is_dir() else []


def copy_fd(src: int, dst: int) -> None:
    """Copy all of SRC into DST from offset 0, in the kernel (copy_file_range)."""
    size = os.fstat(src).st_size
    offset = 0
    while offset < size:
        n = os.copy_file_range(src, dst, min(_COPY_CHUNK, size - offset), offset, offset)
        if n == 0:
            raise OSError(f"short copy at offset {offset} of {size}")
        offset += n
