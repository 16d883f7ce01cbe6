"""Thin ctypes wrappers over the Linux syscalls the sandbox needs.

Each wrapper raises OSError whose message names the syscall and whose filename is the path involved,
so a failure deep inside the sandbox child still reads as one precise line.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import fcntl
import os
import socket
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_DETACH = 0x2

CAP_SYS_ADMIN = 21

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24

# statvfs f_flag bits share their values with the MS_* flags. These are the per-mount flags the kernel
# locks when a mount is carried into a user namespace: a remount that drops any of them fails with EPERM.
LOCKED_MOUNT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME

# pivot_root has no glibc wrapper; the syscall number depends on the architecture.
_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41, "riscv64": 41}

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_IFREQ = "16sh22x"  # struct ifreq: interface name, then the flags member of the 24-byte union

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def _raise(syscall: str, path: str | None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{syscall}: {os.strerror(err)}", path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        what = f"mount {fstype or 'bind'}" + (f" from {source}" if source and fstype is None else "")
        _raise(what, target)


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        _raise("umount2", target)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        _raise(f"unshare({describe_clone_flags(flags)})", None)


def pivot_root(new_root: str, put_old: str) -> None:
    machine = os.uname().machine
    number = _PIVOT_ROOT_NR.get(machine)
    if number is None:
        raise OSError(errno_mod.ENOSYS, f"pivot_root: no syscall number known for {machine}", new_root)
    if _libc.syscall(ctypes.c_long(number), _b(new_root), _b(put_old)) != 0:
        _raise("pivot_root", new_root)


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        _raise(f"prctl({option})", None)


def has_cap_sys_admin() -> bool:
    """Whether this process may create namespaces without a user namespace (root in a sandbox may not)."""
    with open("/proc/self/status", "rb") as handle:
        for line in handle:
            if line.startswith(b"CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << CAP_SYS_ADMIN))
    return os.geteuid() == 0


def remount_readonly(target: str) -> None:
    """Make the mount at *target* read-only, keeping the flags the kernel may have locked on it."""
    remount_bind(target, MS_RDONLY)


def remount_bind(target: str, flags: int) -> None:
    """Add *flags* (MS_RDONLY, MS_NOSUID, MS_NODEV, ...) to the mount at *target*, keeping the flags it
    has that the kernel may have locked on it."""
    locked = os.statvfs(target).f_flag & LOCKED_MOUNT_FLAGS
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags | locked)


def mounts_at_or_below(path: str) -> list[str]:
    """Mount points at *path* or beneath it, in the order they were mounted (parents first)."""
    prefix = path.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle:
            point = _unescape(line.split()[4])
            if point == path or point.startswith(prefix):
                found.append(point)
    return found


def _unescape(field: bytes) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i] == 0x5C and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def loopback_up() -> None:
    """Bring `lo` up in the current network namespace (a fresh one starts with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            current = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
            flags = struct.unpack(_IFREQ, current)[1] | _IFF_UP | _IFF_RUNNING
            fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags))
        except OSError as err:
            raise OSError(err.errno, f"ioctl(SIOCSIFFLAGS, IFF_UP): {os.strerror(err.errno)}", "lo") from None


def write_control(path: str, text: str) -> None:
    """Write *text* to a kernel control file (/proc/PID/uid_map, a cgroup's cgroup.procs...) in one
    write(2), as the kernel parses each write on its own; the error names the text and the file."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    except OSError as err:
        raise OSError(err.errno, f"write {text.strip()!r}: {err.strerror}", path) from None
    finally:
        os.close(fd)


_CLONE_NAMES = (
    (CLONE_NEWUSER, "user"),
    (CLONE_NEWNS, "mount"),
    (CLONE_NEWPID, "pid"),
    (CLONE_NEWUTS, "uts"),
    (CLONE_NEWIPC, "ipc"),
    (CLONE_NEWNET, "net"),
    (CLONE_NEWCGROUP, "cgroup"),
)


def namespace_names(flags: int) -> list[str]:
    return [name for bit, name in _CLONE_NAMES if flags & bit]


def describe_clone_flags(flags: int) -> str:
    return "|".join(
        "CLONE_NEW" + ("NS" if name == "mount" else name.upper()) for name in namespace_names(flags)
    )
