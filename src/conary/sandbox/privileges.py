"""What a sandboxed command may still do: its capabilities, no new privileges, its resource limits.

Applied by the command's process just before exec, after every mount is in place. Each step that
fails raises OSError naming it; nothing here is best effort.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
from dataclasses import dataclass

# The capabilities uid 0 keeps inside the sandbox. Inside a user namespace they act only on what that
# namespace owns (files whose owners are mapped into it, its own processes), never on the host.
#   CAP_CHOWN, CAP_FOWNER, CAP_FSETID: `make install` (install -o/-m, chmod of files it did not make,
#       setgid directories) in /destdir.
#   CAP_DAC_OVERRIDE: root reads and writes files of any mode it owns in /build and /destdir, as
#       build systems expect (a 0444 file that `make` regenerates).
#   CAP_SETUID, CAP_SETGID: tools that switch to another mapped id (test suites, su-less drop of root).
#   CAP_KILL: signal the step's own processes whatever their id.
#   CAP_NET_BIND_SERVICE: test suites that listen on a low port of the private loopback.
#   CAP_SETFCAP: `setcap` on an installed file (iputils' ping), recorded in the namespace's own terms.
# Everything else is gone from the bounding set too, so not even a setuid-root binary or a file with
# capabilities could bring one back: no CAP_SYS_ADMIN (mounts), CAP_DAC_READ_SEARCH (open_by_handle_at),
# CAP_SYS_PTRACE, CAP_SYS_CHROOT, CAP_MKNOD (device numbers are not namespaced), CAP_NET_ADMIN,
# CAP_NET_RAW, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT, CAP_SYS_TIME, CAP_BPF, CAP_PERFMON, ...
KEPT_CAPABILITIES: dict[int, str] = {
    0: "CAP_CHOWN",
    1: "CAP_DAC_OVERRIDE",
    3: "CAP_FOWNER",
    4: "CAP_FSETID",
    5: "CAP_KILL",
    6: "CAP_SETGID",
    7: "CAP_SETUID",
    10: "CAP_NET_BIND_SERVICE",
    31: "CAP_SETFCAP",
}
KEPT_MASK = sum(1 << cap for cap in KEPT_CAPABILITIES)

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed command; None leaves that limit as the caller has it.

    Where the caller has a delegated cgroup v2 group (conary.sandbox.cgroup), the command gets a group
    of its own: memory.max = memory (the whole command's memory, swap.max 0), pids.max = pids + 2 (its
    processes and threads, plus the sandbox's outer process and init), and no rlimit is set. Otherwise:
    """

    memory: int | None = None  # bytes of address space per process (RLIMIT_AS)
    pids: int | None = None  # processes and threads of its user in its user namespace (RLIMIT_NPROC)


def _prctl(option: int, arg2: int, arg3: int = 0, what: str = "") -> None:
    if _libc.prctl(option, arg2, arg3, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({what or option}): {os.strerror(err)}")


def last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except OSError:
        return 40  # CAP_CHECKPOINT_RESTORE, the last one of Linux 6.x


def drop_capabilities() -> None:
    """Keep only KEPT_CAPABILITIES in the bounding, permitted and effective sets; empty the ambient and
    inheritable ones. Needs CAP_SETPCAP, which uid 0 of the sandbox holds until here."""
    for cap in range(last_capability() + 1):
        if cap not in KEPT_CAPABILITIES:
            _prctl(PR_CAPBSET_DROP, cap, what=f"PR_CAPBSET_DROP, {cap}")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="PR_CAP_AMBIENT_CLEAR_ALL")
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    for index in (0, 1):
        keep = (KEPT_MASK >> (32 * index)) & 0xFFFFFFFF
        data[index].effective &= keep
        data[index].permitted &= keep
        data[index].inheritable = 0
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def no_new_privileges() -> None:
    """PR_SET_NO_NEW_PRIVS: exec never grants anything (setuid bits and file capabilities are inert)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1, what="PR_SET_NO_NEW_PRIVS")


def apply_limits(limits: Limits) -> None:
    for name, value, what in (
        ("RLIMIT_AS", limits.memory, "memory"),
        ("RLIMIT_NPROC", limits.pids, "pids"),
    ):
        if value is None:
            continue
        if value < 1:
            raise OSError(errno.EINVAL, f"setrlimit({name}): the {what} limit must be positive")
        kind = getattr(resource, name)
        hard = resource.getrlimit(kind)[1]
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # raising a hard limit needs a privilege the sandbox does not have
        try:
            resource.setrlimit(kind, (value, value))
        except (OSError, ValueError) as err:
            raise OSError(errno.EINVAL, f"setrlimit({name}, {value}): {err}") from None
