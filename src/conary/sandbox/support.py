"""Can this machine give an unprivileged process user namespaces? If not, say why and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from conary.sandbox.errors import SandboxError


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def check_support(*, proc: str | os.PathLike[str] = "/proc", privileged: bool | None = None) -> None:
    """Raise SandboxError naming the knob that blocks user namespaces and the command that lifts it.

    *proc* is the procfs to inspect (a directory laid out like /proc works too). *privileged* says
    whether the caller is root; None asks the kernel. Root is not bound by the unprivileged-only knobs.
    """
    proc = Path(proc)
    if privileged is None:
        privileged = os.geteuid() == 0
    if not (proc / "self/ns/user").exists():
        raise SandboxError(
            "the kernel has no user namespace support",
            where=str(proc / "self/ns/user"),
            hint="use a kernel built with CONFIG_USER_NS=y, or run as root",
        )
    knob = proc / "sys/user/max_user_namespaces"
    if _read(knob) == "0":
        raise SandboxError(
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            where=str(knob),
            hint="sysctl -w user.max_user_namespaces=15000",
        )
    if privileged:
        return
    knob = proc / "sys/kernel/unprivileged_userns_clone"
    if _read(knob) == "0":
        raise SandboxError(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            where=str(knob),
            hint="sysctl -w kernel.unprivileged_userns_clone=1, or run as root",
        )
    knob = proc / "sys/kernel/apparmor_restrict_unprivileged_userns"
    if _read(knob) == "1":
        raise SandboxError(
            "AppArmor restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1)",
            where=str(knob),
            hint="sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or give the Python "
            "interpreter an AppArmor profile that allows 'userns,', or run as root",
        )
