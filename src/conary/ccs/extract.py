"""Write verified package entries below a destination directory without ever following its symlinks."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conary.ccs.errors import CcsError
from conary.ccs.model import FileEntry
from conary.fsutil import ensure_free_space, free_bytes, nearest_existing

if TYPE_CHECKING:
    from conary.ccs.reader import Package

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID


@dataclass(frozen=True)
class Extracted:
    """What an extraction wrote."""

    files: int  # regular files
    bytes: int  # their content
    entries: int  # files, directories and symlinks
    setid_cleared: int  # regular files written without the setuid/setgid bits the package gave them


def _preflight(dest: Path, entries: Sequence[FileEntry]) -> None:
    """Fail before writing anything if an entry would replace something or pass through a symlink."""
    checked: dict[str, bool] = {}
    for entry in entries:
        parts = entry.path.split("/")
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            if rel in checked:
                continue
            try:
                st = os.lstat(dest / rel)
            except FileNotFoundError:
                checked[rel] = False
                break
            is_dir = stat.S_ISDIR(st.st_mode)
            checked[rel] = is_dir
            last = depth == len(parts)
            if stat.S_ISLNK(st.st_mode):
                raise CcsError(
                    f"{rel} is a symlink in the destination; extraction never follows symlinks",
                    where=entry.path,
                )
            if not is_dir and not last:
                raise CcsError(f"{rel} exists in the destination and is not a directory", where=entry.path)
            if last and not (is_dir and entry.type == "dir"):
                raise CcsError("already exists in the destination", where=str(dest / rel))
            if not last and not checked.get(rel):
                break


class _DirCache:
    """Directory fds below the destination root, opened component by component with O_NOFOLLOW."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._fds: dict[str, int] = {"": root_fd}

    def get(self, rel: str) -> int:
        if rel in self._fds:
            return self._fds[rel]
        parent, _, name = rel.rpartition("/")
        parent_fd = self.get(parent)
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        self._fds[rel] = fd
        return fd

    def close(self) -> None:
        for rel, fd in self._fds.items():
            if rel:
                os.close(fd)
        self._fds = {"": self.root_fd}


def extract_entries(
    package: Package, dest: Path, entries: Sequence[FileEntry], *, preserve_setid: bool = False
) -> Extracted:
    """Write ENTRIES below DEST. Regular files lose their setuid and setgid bits unless
    PRESERVE_SETID (the caller decides that only for a signer it trusts)."""
    # The declared sizes were checked against the content when the package was opened, so they
    # are what extraction writes: refuse before the first write if that does not fit. (A chunk
    # listed many times costs little in the archive but is written out in full each time.)
    ensure_free_space(
        sum(e.size for e in entries if e.type == "file"),
        free_bytes(nearest_existing(dest)),
        where=str(dest),
        what=f"extracting {package.nevra}",
    )
    dest.mkdir(parents=True, exist_ok=True)
    _preflight(dest, entries)
    epoch = package.manifest.source_date_epoch
    times = (epoch * 1_000_000_000, epoch * 1_000_000_000)
    as_root = os.geteuid() == 0
    root_fd = os.open(dest, _DIR_FLAGS)
    dirs = _DirCache(root_fd)
    try:
        made_dirs: list[FileEntry] = []
        files = written = cleared = 0
        for entry in sorted(entries, key=lambda e: e.path.encode()):
            parent, _, name = entry.path.rpartition("/")
            parent_fd = dirs.get(parent)
            if entry.type == "dir":
                try:
                    os.mkdir(name, 0o700, dir_fd=parent_fd)
                except FileExistsError:
                    pass
                made_dirs.append(entry)
            elif entry.type == "symlink":
                os.symlink(entry.target, name, dir_fd=parent_fd)
                if as_root:
                    os.chown(name, entry.uid, entry.gid, dir_fd=parent_fd, follow_symlinks=False)
                os.utime(name, ns=times, dir_fd=parent_fd, follow_symlinks=False)
            else:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=parent_fd,
                )
                mode = entry.mode
                if mode & _SETID and not preserve_setid:
                    mode &= ~_SETID
                    cleared += 1
                try:
                    for data in package.iter_file_data(entry):
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view) :]
                    if as_root:
                        os.fchown(fd, entry.uid, entry.gid)
                    os.fchmod(fd, mode)
                    os.utime(fd, ns=times)
                finally:
                    os.close(fd)
                files += 1
                written += entry.size
        # Directory modes last, deepest first, so a read-only directory can still be filled.
        for entry in reversed(made_dirs):
            fd = dirs.get(entry.path)
            if as_root:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode)
            os.utime(fd, ns=times)
    finally:
        dirs.close()
        os.close(root_fd)
    return Extracted(files, written, len(entries), cleared)
