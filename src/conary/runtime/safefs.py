"""Filesystem operations inside a root that never follow a symlink the root contains.

Every path is resolved one component at a time from a descriptor of the root: each parent is opened
with O_DIRECTORY|O_NOFOLLOW relative to the one before, so a symlink (or a file) where a directory
is expected stops the walk with UnsafePathError instead of leading the write elsewhere. The final
component is always handled relative to its parent's descriptor without following it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat

from conary.runtime.errors import UnsafePathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_CACHED_DIRS = 4096

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def check_relpath(path: str) -> tuple[str, ...]:
    """Split a package path into components, refusing anything that could leave the root."""
    if not path or "\0" in path or path.startswith("/"):
        raise UnsafePathError("not a relative path inside the root", where=repr(path))
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError("path has an empty, '.' or '..' component", where=path)
    return parts


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def syncfs(fd: int) -> None:
    """Flush every dirty page of the filesystem holding FD (one call instead of one fsync per file)."""
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "syncfs")


class RootFS:
    """A root directory opened once; parents of paths are cached as directory descriptors."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[str, int] = {"": self.fd}
        # Cached directory -> its cached subdirectories, so forgetting one directory costs the size
        # of its subtree, not of the whole cache (a removal forgets every directory it deletes).
        self._children: dict[str, set[str]] = {}
        # One descriptor per filesystem reached below the root (st_dev -> fd): a changeset may write
        # to a separately mounted /boot or /usr, and syncfs() flushes only the filesystem of the
        # descriptor it is given. Every directory is reached through dir_fd(), which records it.
        self._filesystems: dict[int, int] = {os.fstat(self.fd).st_dev: os.dup(self.fd)}

    def close(self) -> None:
        self.forget_all()
        for fd in self._filesystems.values():
            os.close(fd)
        self._filesystems = {}
        os.close(self.fd)

    def __enter__(self) -> RootFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forget(self, directory: str) -> None:
        """Drop cached descriptors of DIRECTORY and below (it was removed or replaced)."""
        if not directory:
            self.forget_all()
            return
        siblings = self._children.get(parent_of(directory))
        if siblings is not None:
            siblings.discard(directory)
        pending = [directory]
        while pending:
            key = pending.pop()
            fd = self._dirs.pop(key, None)
            if fd is not None:
                os.close(fd)
            pending.extend(self._children.pop(key, ()))

    def dir_fd(self, directory: str) -> int:
        """A descriptor of DIRECTORY (relative), reached without following any symlink."""
        fd = self._dirs.get(directory)
        if fd is not None:
            return fd
        if len(self._dirs) > _MAX_CACHED_DIRS:
            self.forget_all()
        parts = check_relpath(directory)
        parent = self.dir_fd(parent_of(directory))
        try:
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(
                    "a parent is a symlink or not a directory; refusing to write through it",
                    where=directory,
                    hint="remove the symlink or file from the root, or choose another root",
                )
            raise
        self._dirs[directory] = fd
        self._children.setdefault(parent_of(directory), set()).add(directory)
        device = os.fstat(fd).st_dev
        if device not in self._filesystems:
            kept = os.dup(fd)
            if self._filesystems.setdefault(device, kept) != kept:  # a staging thread was first
                os.close(kept)
        return fd

    def forget_all(self) -> None:
        for key in [k for k in self._dirs if k]:
            os.close(self._dirs.pop(key))
        self._children.clear()

    def split(self, path: str) -> tuple[int, str]:
        """(descriptor of the parent, final component) for PATH."""
        parent, _, name = path.rpartition("/")
        if name in ("", ".", "..") or "\0" in path or path.startswith("/"):
            check_relpath(path)  # raises with the precise reason
        return self.dir_fd(parent), name

    # --- queries -------------------------------------------------------------------------------

    def lstat(self, path: str) -> os.stat_result | None:
        """lstat PATH, or None when it (or a parent) does not exist. Unsafe parents raise."""
        try:
            fd, name = self.split(path)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        return self.lstat(path) is not None

    def readlink(self, path: str) -> str:
        fd, name = self.split(path)
        return os.readlink(name, dir_fd=fd)

    def open_read(self, path: str) -> int:
        """Open a regular file for reading; a symlink in its place is refused."""
        fd, name = self.split(path)
        out = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        if not stat.S_ISREG(os.fstat(out).st_mode):
            os.close(out)
            raise UnsafePathError("not a regular file", where=path)
        return out

    # --- mutations -----------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> None:
        fd, name = self.split(path)
        os.mkdir(name, 0o700, dir_fd=fd)

    def open_dir(self, path: str) -> int:
        fd, name = self.split(path)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError("not a directory", where=path)
            raise

    def create(self, path: str) -> int:
        """Create a new file (never an existing one, never through a symlink) for writing."""
        fd, name = self.split(path)
        return os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd
        )

    def symlink(self, target: str, path: str) -> None:
        fd, name = self.split(path)
        os.symlink(target, name, dir_fd=fd)

    def lchown(self, path: str, uid: int, gid: int) -> None:
        fd, name = self.split(path)
        os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)

    def rename(self, src: str, dst: str) -> None:
        sfd, sname = self.split(src)
        dfd, dname = self.split(dst)
        os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)

    def link(self, src: str, dst: str) -> None:
        """Hard-link SRC (the entry itself, even a symlink) as DST."""
        sfd, sname = self.split(src)
        dfd, dname = self.split(dst)
        os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def unlink(self, path: str) -> bool:
        try:
            fd, name = self.split(path)
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            return False
        return True

    def rmdir(self, path: str) -> bool:
        """Remove an empty directory; False if it is missing or not empty."""
        try:
            fd, name = self.split(path)
            os.rmdir(name, dir_fd=fd)
        except FileNotFoundError:
            return False
        except OSError as err:
            # EBUSY: a mount point (a separately mounted /boot) stays, like a non-empty directory.
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EBUSY):
                return False
            raise
        self.forget(path)
        return True

    def set_meta(self, path: str, mode: int, uid: int, gid: int, *, is_dir: bool) -> None:
        """chown then chmod (chown clears set-id bits) an existing file or directory, not a symlink."""
        fd = self.open_dir(path) if is_dir else self.open_read(path)
        try:
            if os.geteuid() == 0:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    @property
    def filesystems(self) -> frozenset[int]:
        """The devices (st_dev) of every filesystem this root has reached so far."""
        return frozenset(self._filesystems)

    def syncfs(self) -> None:
        """Flush every filesystem reached below the root: the root's own, and any mounted inside it
        that a path of this session went through."""
        for fd in tuple(self._filesystems.values()):  # one C-level copy: staging threads may add
            syncfs(fd)


def ensure_private_dir(root_fs: RootFS, path: str, mode: int = 0o755) -> None:
    """mkdir -p for the runtime's own directories, still without following symlinks."""
    parts = check_relpath(path)
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        st = root_fs.lstat(sub)
        if st is None:
            root_fs.mkdir(sub, mode)
            fd = root_fs.open_dir(sub)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        elif not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError("expected a directory", where=sub)
