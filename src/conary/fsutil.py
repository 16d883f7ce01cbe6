"""Crash-safe file writes shared by every layer: temp file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from conary.errors import MissingToolError, NoSpaceError


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(target: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces *target* only if the block completes without error."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2  # <linux/falloc.h>
_fallocate = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free a byte range of a scratch file's storage (it reads back as zeros); False where the
    filesystem cannot, which only means the space is freed later, with the file."""
    if _fallocate is None or length <= 0:
        return False
    return _fallocate(fd, _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE, offset, length) == 0


class BackgroundSync:
    """fdatasync() a file that is still being written, on a thread of its own.

    The final fsync of a big file otherwise waits for all of it at once (on virtual disks the cost
    of a flush grows with the data written since the last one). Calling request() every few tens of
    megabytes overlaps that wait with producing the rest. Requests made while a flush runs are
    folded into one more flush. Use as a context manager; leaving it waits for the last flush and
    re-raises its error, if any.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wanted = threading.Event()
        self._requested = False
        self._closing = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="background-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._requested = True
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            closing = self._closing
            if self._requested:  # also one made just before leaving: it is still waited for
                self._requested = False
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    self._error = exc
                    return
            if closing:
                return

    def __enter__(self) -> BackgroundSync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing = True
        self._wanted.set()
        self._thread.join()
        if self._error is not None and exc_info[0] is None:
            raise self._error


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    with atomic_writer(target, mode) as handle:
        handle.write(data)


def atomic_copy(source: str | os.PathLike[str], target: str | os.PathLike[str], mode: int = 0o644) -> None:
    with open(source, "rb") as src, atomic_writer(target, mode) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def size_text(size: int) -> str:
    """SIZE in bytes as a short human figure (binary units): 512 B, 3.4 MiB, 1.0 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """PATH, or its closest ancestor that exists (where a directory about to be made will live)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def free_bytes(path_or_fd: str | os.PathLike[str] | int) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding PATH_OR_FD."""
    st = os.fstatvfs(path_or_fd) if isinstance(path_or_fd, int) else os.statvfs(path_or_fd)
    return st.f_bavail * st.f_frsize


def ensure_free_space(needed: int, available: int, *, where: str, what: str) -> None:
    """Refuse, before anything is written, when NEEDED bytes do not fit in AVAILABLE."""
    if needed > available:
        raise NoSpaceError(
            f"{what} needs {size_text(needed)} ({needed} bytes), but its filesystem has only "
            f"{size_text(available)} free; nothing was written",
            where=where,
            hint="free some space or choose another destination, then run the command again",
        )


def require_tool(tool: str, debian_package: str, purpose: str | None = None) -> str:
    """Return the absolute path of *tool*, or raise naming the Debian package that provides it."""
    found = shutil.which(tool)
    if found is None:
        raise MissingToolError(tool, debian_package, purpose=purpose)
    return found
