"""The scratch directory a package build keeps beside its output, and the sweep of stale ones.

A build that is killed (SIGKILL, power loss) cannot remove its scratch directory, which holds
stripped copies and spooled objects as big as the package, nor the temporary package file. Each
live build holds an flock on a file in its directory; the next build into the same output
directory removes every scratch directory nobody holds, and, when no other build is running
there, temporary package files nothing has written to for ten minutes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".ccs-build-"
_LOCK = "lock"
_UNLOCKED_GRACE = 60  # seconds a scratch directory may exist before its build takes the lock
_TEMP_GRACE = 600  # seconds without a write before a temporary package file counts as abandoned


@contextlib.contextmanager
def build_workdir(output_dir: Path) -> Iterator[Path]:
    """A fresh scratch directory in *output_dir*, locked for as long as the block runs."""
    sweep_stale(output_dir)
    with tempfile.TemporaryDirectory(prefix=PREFIX, dir=output_dir) as work:
        # The lock file appears under its name only once it is held: a sweep running beside us
        # could otherwise take the free lock in the instant between its creation and our flock,
        # judge the directory stale and remove it under us (parallel builds into one directory).
        fd = os.open(Path(work) / f".{_LOCK}.new", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(Path(work) / f".{_LOCK}.new", Path(work) / _LOCK)
            yield Path(work)
        finally:
            os.close(fd)


def sweep_stale(output_dir: Path) -> list[Path]:
    """Remove what killed builds left in *output_dir*; returns what was removed."""
    removed: list[Path] = []
    live = 0
    for entry in sorted(output_dir.glob(PREFIX + "*")):
        if not entry.is_dir() or entry.is_symlink():
            continue
        if _held(entry / _LOCK):
            live += 1
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if live == 0:
        # atomic_writer's temporary for <name>.ccs is .<name>.ccs.<random>.tmp
        cutoff = time.time() - _TEMP_GRACE
        for leftover in sorted(output_dir.glob(".*.ccs.*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                st = leftover.lstat()
                if leftover.is_file() and not leftover.is_symlink() and st.st_mtime < cutoff:
                    leftover.unlink()
                    removed.append(leftover)
    return removed


def _held(lock: Path) -> bool:
    """True if a live build holds *lock*. A directory without one is a build in its first
    instant (or one killed in it): it counts as stale only once it is a minute old."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            return lock.parent.stat().st_mtime > time.time() - _UNLOCKED_GRACE
        except FileNotFoundError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
