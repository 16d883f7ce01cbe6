"""The root's content store: one object per distinct file content, named by its sha256.

Objects are whole files (not chunks) at ``<root>/conary/objects/aa/rest``, named by the sha256 of
the file's content. An object holds that content as a sequence of zstd frames: exactly the
compressed chunks the package carried, copied without recompressing. So filling the store costs no
compression and writes the compressed size, while restoring, verifying or rolling back a file is
still one object per file (decompress and write, or decompress and hash). A content already present
is never written again. New objects are written to ``objects/tmp`` and renamed into place only once
durable (the transaction's syncfs comes first).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from conary.runtime.errors import MissingContentError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    path: Path
    size: int  # bytes on disk (compressed)


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

    def new_tmp(self) -> tuple[Path, int]:
        """A fresh temporary object file (path, descriptor open for writing zstd frames)."""
        if "tmp" not in self._made_dirs:
            self.tmp.mkdir(mode=0o755, parents=True, exist_ok=True)
            self._made_dirs.add("tmp")
        tmp = self.tmp / f"{secrets.token_hex(8)}.part"
        return tmp, os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)

    def adopt(self, tmp: Path, sha256: str) -> None:
        """Rename a completed temporary object into place (its durability is the caller's)."""
        os.rename(tmp, self._prefix_dir(sha256) / sha256[2:])
        self._on_mutation()

    def missing_error(self, sha256: str) -> MissingContentError:
        return MissingContentError(
            "object missing from the content store",
            where=f"object {sha256}",
            hint="reinstall the package from its .ccs file to bring the content back",
        )

    def read_chunks(self, sha256: str) -> Iterator[bytes]:
        """The content of object SHA256, decompressed, block by block."""
        try:
            handle = open(self.path(sha256), "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise self.missing_error(sha256)
        with handle:
            yield from decompress_frames(handle)

    def copy_into(self, sha256: str, dst_fd: int) -> None:
        """Write the content of object SHA256 into the open file DST_FD."""
        for block in self.read_chunks(sha256):
            write_all(dst_fd, block)

    def check(self, sha256: str) -> str | None:
        """None if the object exists and its content hashes to its name; otherwise what is wrong."""
        if not self.has(sha256):
            return "missing from the content store"
        digest = hashlib.sha256()
        try:
            for data in self.read_chunks(sha256):
                digest.update(data)
        except zstandard.ZstdError:
            return "content store object is corrupt"
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


def decompress_frames(handle: object) -> Iterator[bytes]:
    """Decompress a file of concatenated zstd frames (an empty file is empty content)."""
    reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True, closefd=False)
    while block := reader.read(_BLOCK):
        yield block


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
