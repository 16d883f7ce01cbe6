"""The source cache: one file per checksum, at ``<root>/<algo>/<hexdigest>``.

A file lands in the cache only after its bytes were hashed and matched: bytes stream into a temp file
in the target directory, are verified, fsynced, then renamed into place. A crash or a mismatch leaves
no file under the final name and no temp file behind (only a killed process can leave a
``.<hex>.*.tmp`` file, which is never read). The layout is also the mirror layout, so a
cache directory can serve as a mirror for another machine as it is.

``--skip-verify`` (docs/sources.md) keeps the cache honest: bytes that differ from a recipe's pin are
stored under their actual checksum like any other file, and a note at
``<root>/.unverified/<algo>/<pinned hex>`` says which actual checksum stood in for the pinned one and
where it came from. The note is read only by a run that skips verification; nothing else ever
takes it as the pinned bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conary.errors import ConaryError
from conary.fetch.checksum import Checksum
from conary.fetch.errors import ChecksumMismatchError
from conary.fsutil import atomic_write_bytes, atomic_writer

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Substitute:
    """Bytes that stood in for a pinned checksum they do not have (``--skip-verify``)."""

    pinned: str  # the checksum the recipe pins, e.g. "sha256:..."
    actual: str  # the checksum of the bytes used, under which the cache holds them
    origin: str  # where those bytes came from (a file, a mirror URL, Debian's archive)


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
        # Absolute, so the paths it hands out stay true for a tool run in another working dir.
        self.root = Path(root).absolute()

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

    def note_substitute(self, substitute: Substitute) -> None:
        """Record that *substitute.actual* stood in for *substitute.pinned* (written atomically)."""
        cs = Checksum.parse(substitute.pinned)
        data = {"actual": str(Checksum.parse(substitute.actual)), "origin": substitute.origin}
        atomic_write_bytes(self._substitute_note(cs), (json.dumps(data, sort_keys=True) + "\n").encode())

    def substitute_for(self, pinned: str | Checksum) -> Substitute | None:
        """The bytes recorded as standing in for *pinned*, when the cache still holds them."""
        cs = Checksum.parse(pinned)
        try:
            data = json.loads(self._substitute_note(cs).read_text(encoding="utf-8"))
            actual = str(Checksum.parse(data["actual"]))
            origin = str(data["origin"])
        except (OSError, ValueError, KeyError, TypeError, ConaryError):
            return None  # no note, or one a killed writer could not have left: not a substitute
        if self.path_for(actual) is None:
            return None
        return Substitute(str(cs), actual, origin)

    def _substitute_note(self, cs: Checksum) -> Path:
        return self.root / ".unverified" / cs.algo / cs.hexdigest

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
