"""The source cache: one file per checksum, at ``<root>/<algo>/<hexdigest>``.

A file lands in the cache only after its bytes were hashed and matched: bytes stream into a temp file
in the target directory, are verified, fsynced, then renamed into place. A crash or a mismatch leaves
no file under the final name and no temp file behind (only a killed process can leave a
``.<hex>.*.tmp`` file, which is never read). The layout is also the mirror layout, so a
cache directory can serve as a mirror for another machine as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from conary.fetch.checksum import Checksum
from conary.fetch.errors import ChecksumMismatchError
from conary.fsutil import atomic_writer

_BLOCK = 1 << 20


def default_cache_dir() -> Path:
    """$CONARY_SOURCE_CACHE, else $XDG_CACHE_HOME/conary/sources, else ~/.cache/conary/sources."""
    explicit = os.environ.get("CONARY_SOURCE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "conary" / "sources"


class SourceCache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_of(self, checksum: str | Checksum) -> Path:
        """Where the file for *checksum* lives (whether or not it is there)."""
        cs = Checksum.parse(checksum)
        return self.root / cs.algo / cs.hexdigest

    def path_for(self, checksum: str | Checksum) -> Path | None:
        """The cached file for *checksum*, or None."""
        path = self.path_of(checksum)
        return path if path.is_file() else None

    def __contains__(self, checksum: object) -> bool:
        return isinstance(checksum, str | Checksum) and self.path_for(checksum) is not None

    def add_stream(
        self, chunks: BinaryIO | Iterable[bytes], checksum: str | Checksum, *, origin: str = "stream"
    ) -> Path:
        """Write the bytes of *chunks* under *checksum* if they match it; raise ChecksumMismatchError if not.

        *chunks* is a binary file or an iterable of byte blocks. *origin* names the source in errors.
        """
        cs = Checksum.parse(checksum)
        target = self.path_of(cs)
        hasher = cs.hasher()
        blocks = _blocks_of(chunks)
        with atomic_writer(target, 0o644) as out:
            for block in blocks:
                hasher.update(block)
                out.write(block)
            actual = hasher.hexdigest()
            if actual != cs.hexdigest:
                # Raising inside the writer removes its temp file: nothing unverified lands.
                raise ChecksumMismatchError(origin, str(cs), f"{cs.algo}:{actual}")
        return target

    def add_file(
        self, source: str | os.PathLike[str], checksum: str | Checksum, *, origin: str | None = None
    ) -> Path:
        """Copy *source* into the cache under *checksum* after verifying it."""
        with open(source, "rb") as stream:
            return self.add_stream(stream, checksum, origin=origin or str(source))

    @contextlib.contextmanager
    def lock(self, checksum: str | Checksum) -> Iterator[None]:
        """Serialise fetches of one checksum across threads and processes, so the bytes come once."""
        cs = Checksum.parse(checksum)
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{cs.algo}-{cs.hexdigest}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _blocks_of(chunks: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(chunks, "read", None)
    if read is None:
        yield from (block for block in chunks if block)
        return
    while block := read(_BLOCK):
        yield block
