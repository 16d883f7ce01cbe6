"""The seccomp filter every sandboxed command runs under, in the spirit of Docker's default profile.

Everything is allowed except what a build never needs and an escape would: system calls that reach
past the sandbox's namespaces (file handles, kernel modules, kexec, BPF, perf, keyrings, the clock,
swap, reboot), that would undo the sandbox's mounts, or that make a new user namespace (inside one,
uid 0 would regain every capability the sandbox dropped). They fail with EPERM, as on a kernel that
refuses them, so build scripts see an ordinary error. Built with libseccomp through pyseccomp (a ctypes
binding with the API of libseccomp's own Python module); no BPF is written here.
"""

from __future__ import annotations

import errno
import types

from conary.sandbox import syscalls as sc
from conary.sandbox.errors import SandboxError

try:
    import pyseccomp
except (ImportError, RuntimeError) as err:  # the binding, or libseccomp under it, is not installed
    pyseccomp = None
    _MISSING = str(err)

DENIED = (
    # File handles: open_by_handle_at opens any inode of a mounted filesystem, past every bind.
    "open_by_handle_at",
    "name_to_handle_at",
    # The kernel itself.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "iopl",
    "ioperm",
    "syslog",
    "lookup_dcookie",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "uselib",
    "vhangup",
    "acct",
    "reboot",
    "swapon",
    "swapoff",
    # Keyrings are not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    # The clock is the host's.
    "clock_settime",
    "clock_adjtime",
    "settimeofday",
    "adjtimex",
    # The mounts are set up; nothing may change them.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # Other processes' namespaces.
    "setns",
)
# Denied when asked to make a new user namespace.
_NEW_USER_NAMESPACE = ("unshare", "clone")
# clone3 passes its flags in a struct a filter cannot read: ENOSYS makes libc fall back to clone().
_UNREADABLE = ("clone3",)


def require() -> types.ModuleType:
    """The libseccomp binding, or one precise error saying what to install. Checked by the caller
    before any process is forked: no sandbox runs without its filter."""
    if pyseccomp is None:
        raise SandboxError(
            f"the seccomp filter cannot be built: {_MISSING}",
            where="conary.sandbox",
            hint="install the Python package pyseccomp and Debian's libseccomp2 (scripts/setup does both)",
        )
    return pyseccomp


def build_filter() -> pyseccomp.SyscallFilter:
    seccomp = require()
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    if seccomp.system_arch() == seccomp.Arch.X86_64:
        # 32-bit x86 programs (multilib test suites) enter through the same filter.
        rules.add_arch(seccomp.Arch.X86)
        rules.add_arch(seccomp.Arch.X32)
    for name in DENIED:
        _add(rules, pyseccomp.ERRNO(errno.EPERM), name)
    for name in _NEW_USER_NAMESPACE:
        flag = pyseccomp.Arg(0, pyseccomp.MASKED_EQ, sc.CLONE_NEWUSER, sc.CLONE_NEWUSER)
        _add(rules, pyseccomp.ERRNO(errno.EPERM), name, flag)
    for name in _UNREADABLE:
        _add(rules, pyseccomp.ERRNO(errno.ENOSYS), name)
    return rules


def _add(rules: pyseccomp.SyscallFilter, action: int, name: str, *args: pyseccomp.Arg) -> None:
    try:
        rules.add_rule(action, name, *args)
    except OSError as err:
        # A name this libseccomp does not know is a call this kernel's ABI lacks: nothing to deny.
        if err.errno not in (errno.EINVAL, errno.EFAULT, errno.EDOM):
            raise


def install() -> None:
    """Load the filter into this process (inherited by every child, kept across exec). Needs
    no_new_privs first."""
    build_filter().load()
