"""Filesystem operations that build the sandbox's root, one small frozen object per step.

A plan is a tuple of these. `plan()` sorts it (parents before children), drops duplicates, and the
runner executes each with `execute(newroot, context)` inside the new mount namespace, before pivot_root.
`newroot` is the host-side path of the future root; destinations are paths inside the sandbox.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from conary.sandbox import syscalls as sc
from conary.sandbox.errors import SandboxError

# Device nodes a build needs; bound from the host one by one (a tmpfs in a user namespace cannot hold
# device nodes of its own).
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
# Parts of a fresh /proc that can change the host kernel; made read-only as bubblewrap does.
_PROC_READONLY = ("sys", "sysrq-trigger", "irq", "bus")

# The inode number of the initial PID namespace (PROC_PID_INIT_INO), the same on every kernel.
INIT_PID_NAMESPACE_INODE = 0xEFFFFFFC


@dataclass(frozen=True)
class Context:
    """What the runner knows while it executes the operations.

    - pins: bind source -> O_PATH descriptor opened in the new mount namespace before anything was
      mounted (so a source cannot be swapped or covered between planning and binding).
    - user_namespace: the sandbox has its own user namespace.
    - nested: the caller itself runs in a PID namespace of its own (a container, or another sandbox),
      so its /proc already shows only that namespace.
    """

    pins: Mapping[str, int] = field(default_factory=dict)
    user_namespace: bool = False
    nested: bool = False


_NO_CONTEXT = Context()


def _check_dest(dest: str | os.PathLike[str], what: str) -> str:
    text = os.fspath(dest)
    parts = text.split("/")
    if not text.startswith("/") or any(p in (".", "..") for p in parts):
        raise SandboxError(f"{what} must be an absolute path without '.' or '..' components", where=text)
    return "/" + "/".join(p for p in parts if p)


def _check_source(source: str | os.PathLike[str]) -> str:
    text = os.fspath(source)
    if not text.startswith("/"):
        raise SandboxError("bind source must be an absolute path", where=text)
    return os.path.normpath(text)


def inside(newroot: str, dest: str, *, final_may_be_link: bool = False) -> str:
    """Host path of *dest* under *newroot*, refusing to pass through symlinks (they could point out)."""
    path = newroot.rstrip("/")
    parts = [p for p in dest.split("/") if p]
    for index, part in enumerate(parts):
        path = f"{path}/{part}"
        if final_may_be_link and index == len(parts) - 1:
            break
        if os.path.islink(path):
            raise OSError(errno.ELOOP, f"refusing to follow symlink at {dest!r}", path)
    return path or "/"


def _mountpoint(path: str, directory: bool) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif not os.path.lexists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))


@dataclass(frozen=True)
class Bind:
    """Bind *source* (a host path) at *dest*, recursively; read-only unless readonly=False. Every mount
    it brings along is nosuid and nodev: nothing setuid and no device node is usable through it."""

    source: str
    dest: str
    readonly: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", _check_source(self.source))
        object.__setattr__(self, "dest", _check_dest(self.dest, "bind destination"))

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        fd = context.pins.get(self.source)
        source = f"/proc/self/fd/{fd}" if fd is not None else self.source
        target = inside(newroot, self.dest)
        _mountpoint(target, stat.S_ISDIR(os.stat(source).st_mode))
        try:
            sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)
        except OSError as err:
            raise OSError(
                err.errno, f"bind mount of {self.source}: {os.strerror(err.errno)}", target
            ) from None
        flags = sc.MS_NOSUID | sc.MS_NODEV | (sc.MS_RDONLY if self.readonly else 0)
        for point in sc.mounts_at_or_below(target):
            sc.remount_bind(point, flags)

    def describe(self) -> str:
        return f"bind {'ro' if self.readonly else 'rw'} {self.source} -> {self.dest}"


@dataclass(frozen=True)
class Tmpfs:
    """A fresh, writable tmpfs at *dest*."""

    dest: str
    mode: int = 0o755

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _check_dest(self.dest, "tmpfs destination"))

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        target = inside(newroot, self.dest)
        _mountpoint(target, True)
        sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"mode={self.mode:04o}")

    def describe(self) -> str:
        return f"tmpfs {self.dest} mode={self.mode:04o}"


@dataclass(frozen=True)
class Proc:
    """A fresh procfs for the sandbox's PID namespace (only its own processes are listed)."""

    dest: str = "/proc"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _check_dest(self.dest, "proc destination"))

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        target = inside(newroot, self.dest)
        _mountpoint(target, True)
        try:
            sc.mount("proc", target, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        except PermissionError:
            # In a user namespace the kernel refuses a new procfs while the visible one has locked
            # mounts over parts of it, as the /proc of a container or of an outer sandbox does. That
            # /proc already shows only the caller's own PID namespace, so binding it hides the host
            # just as well; on the host itself the refusal stands.
            if not context.user_namespace:
                raise
            if not context.nested:
                raise SandboxError(
                    "the kernel refuses a fresh /proc in a user namespace: the host's /proc has "
                    "mounts over parts of it",
                    where="/proc",
                    hint="unmount what covers parts of /proc (see /proc/self/mountinfo), or run as root",
                ) from None
            sc.mount("/proc", target, None, sc.MS_BIND | sc.MS_REC)
            return
        if context.user_namespace:
            return  # as an unprivileged uid, nothing under /proc that touches the host is writable
        for name in _PROC_READONLY:
            path = f"{target}/{name}"
            if os.path.exists(path):
                sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
                sc.remount_bind(path, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)

    def describe(self) -> str:
        return f"proc {self.dest} (fresh; without a user namespace {', '.join(_PROC_READONLY)} read-only)"


@dataclass(frozen=True)
class Dev:
    """A minimal /dev: a tmpfs with the host's harmless device nodes, a private devpts, shm, fd links.

    The tmpfs itself is made read-only once every operation has run (see `seal`)."""

    dest: str = "/dev"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _check_dest(self.dest, "dev destination"))

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        target = inside(newroot, self.dest)
        _mountpoint(target, True)
        sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=0755")
        for name in DEV_NODES:
            _mountpoint(f"{target}/{name}", False)
            sc.mount(f"/dev/{name}", f"{target}/{name}", None, sc.MS_BIND)
        for name, link in _DEV_LINKS:
            os.symlink(link, f"{target}/{name}")
        os.mkdir(f"{target}/pts", 0o755)
        sc.mount(
            "devpts",
            f"{target}/pts",
            "devpts",
            sc.MS_NOSUID | sc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )
        os.mkdir(f"{target}/shm", 0o755)
        sc.mount("tmpfs", f"{target}/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=1777")

    def seal(self, newroot: str) -> None:
        sc.remount_readonly(inside(newroot, self.dest))

    def describe(self) -> str:
        return (
            f"dev {self.dest} (read-only tmpfs; {' '.join(DEV_NODES)} bound from the host; "
            "private pts, shm tmpfs, fd/stdin/stdout/stderr links)"
        )


@dataclass(frozen=True)
class Dir:
    """A directory at *dest* (parents are created 0755)."""

    dest: str
    mode: int = 0o755

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _check_dest(self.dest, "directory"))

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        target = inside(newroot, self.dest)
        os.makedirs(target, mode=0o755, exist_ok=True)
        os.chmod(target, self.mode)

    def describe(self) -> str:
        return f"dir {self.dest} mode={self.mode:04o}"


@dataclass(frozen=True)
class Symlink:
    """A symlink at *dest* pointing to *target* (kept verbatim, usually relative like usr/bin)."""

    target: str
    dest: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _check_dest(self.dest, "symlink"))

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        path = inside(newroot, self.dest, final_may_be_link=True)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.islink(path) and os.readlink(path) == self.target:
            return
        os.symlink(self.target, path)

    def describe(self) -> str:
        return f"symlink {self.dest} -> {self.target}"


@dataclass(frozen=True)
class WriteFile:
    """A regular file at *dest* with the given content (never the host's copy)."""

    dest: str
    content: bytes | str
    mode: int = 0o644

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", _check_dest(self.dest, "file"))
        if isinstance(self.content, str):
            object.__setattr__(self, "content", self.content.encode())

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        path = inside(newroot, self.dest)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, self.mode)
        try:
            os.write(fd, self.content)
            os.fchmod(fd, self.mode)
        finally:
            os.close(fd)

    def describe(self) -> str:
        return f"file {self.dest} mode={self.mode:04o} ({len(self.content)} bytes)"


@dataclass(frozen=True)
class Overlay:
    """A read-only union of host directories at *dest*: an overlayfs with *lowers* (top first) as its
    lower layers and no upper layer, so nothing in the union can be changed from inside."""

    lowers: tuple[str, ...]
    dest: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "lowers", tuple(_check_source(s) for s in self.lowers))
        object.__setattr__(self, "dest", _check_dest(self.dest, "overlay destination"))
        if len(self.lowers) < 2:
            raise SandboxError("an overlay needs at least two layers", where=self.dest)

    def execute(self, newroot: str, context: Context = _NO_CONTEXT) -> None:
        layers = []
        for source in self.lowers:
            fd = context.pins.get(source)
            layer = f"/proc/self/fd/{fd}" if fd is not None else source
            # ':' separates layers and ',' options in the mount data; pinned paths never hold either.
            if any(c in layer for c in ":,\\"):
                raise OSError(errno.EINVAL, "layer path holds ':', ',' or a backslash", source)
            layers.append(layer)
        target = inside(newroot, self.dest)
        _mountpoint(target, True)
        flags = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
        try:
            sc.mount("overlay", target, "overlay", flags, "lowerdir=" + ":".join(layers))
        except OSError as err:
            raise OSError(
                err.errno, f"overlay of {' '.join(self.lowers)}: {os.strerror(err.errno)}", target
            ) from None

    def describe(self) -> str:
        return f"overlay ro {' + '.join(self.lowers)} -> {self.dest} (top first)"


Operation = Bind | Tmpfs | Proc | Dev | Dir | Symlink | WriteFile | Overlay


def sources(op: Operation) -> tuple[str, ...]:
    """The host paths an operation reads from (pinned by the runner before anything is mounted)."""
    if isinstance(op, Bind):
        return (op.source,)
    if isinstance(op, Overlay):
        return op.lowers
    return ()


def _depth_key(op: Operation) -> tuple[str, ...]:
    return tuple(p for p in op.dest.split("/") if p)


def plan(operations: Iterable[Operation]) -> tuple[Operation, ...]:
    """Sort operations so parents come before children (stable otherwise) and drop exact duplicates."""
    unique: list[Operation] = []
    for op in operations:
        if op not in unique:
            unique.append(op)
    return tuple(sorted(unique, key=_depth_key))
