"""What a sandbox is: its root, its operations, identity, environment — and the plan it prints."""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from conary.sandbox import cgroup
from conary.sandbox import syscalls as sc
from conary.sandbox.errors import SandboxError
from conary.sandbox.ops import Operation, plan
from conary.sandbox.privileges import KEPT_CAPABILITIES, Limits

DEFAULT_HOSTNAME = "conary-sandbox"
# When root starts a sandbox, the command runs in a user namespace of its own whose ids 0-65535 are
# these host ids: uid 0 inside is host uid 1600000000, which owns nothing on the host. The range lies
# in the one systemd documents for container ids (524288-1879048191), apart from the ranges that
# systemd-nspawn (0x80000 upwards in steps of 0x10000 from the top of /etc/subuid) and Docker's
# userns-remap (/etc/subuid) usually pick.
MAPPED_ID_BASE = 1_600_000_000
MAPPED_ID_COUNT = 65536
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class SandboxSpec:
    """A complete description of one sandbox. Nothing from the host is visible unless an operation says so.

    - operations: the filesystem plan (see conary.sandbox.ops); sorted and deduplicated before use.
    - network: False gives a private network namespace with only loopback up.
    - user_namespace: None means automatic: used only when the caller lacks CAP_SYS_ADMIN (is not
      root, or is root inside another sandbox).
    - uid/gid: identity inside; with a user namespace they map to the caller's own uid/gid.
    - env: the whole environment of the command (the caller's is never inherited).
    - chroot_root: run inside this existing root (bound read-write as /) instead of a fresh tmpfs
      root; the tmpfs root, by contrast, is made read-only after the operations have run.
    - host_root: when the caller is root and the sandbox is set up without a user namespace, whether
      the command keeps host uid 0 (True) or runs in a user namespace of its own with ids 0-65535
      mapped to MAPPED_ID_BASE... (False). None: host root only with a chroot_root (scriptlets write a
      real root as its owner). Either way it gets only the kept capabilities, no_new_privs and seccomp.
    - limits: memory and process limits of the command: a cgroup v2 group of its own where the caller
      has a delegated one (conary.sandbox.cgroup), rlimits otherwise.
    """

    operations: tuple[Operation, ...]
    hostname: str = DEFAULT_HOSTNAME
    network: bool = False
    user_namespace: bool | None = None
    uid: int = 0
    gid: int = 0
    cwd: str = "/"
    env: Mapping[str, str] = field(default_factory=dict)
    chroot_root: str | None = None
    host_root: bool | None = None
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", tuple(self.operations))
        object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))
        if self.chroot_root is not None:
            object.__setattr__(self, "chroot_root", os.path.abspath(os.fspath(self.chroot_root)))
        if not os.fspath(self.cwd).startswith("/"):
            raise SandboxError("the working directory must be an absolute path", where=str(self.cwd))
        for key in self.env:
            if not key or "=" in key or "\0" in key:
                raise SandboxError(f"invalid environment variable name {key!r}")
        if not self.hostname or len(self.hostname) > 64:
            raise SandboxError(f"invalid hostname {self.hostname!r}")

    @property
    def uses_user_namespace(self) -> bool:
        if self.user_namespace is None:
            return not sc.has_cap_sys_admin()
        return self.user_namespace

    @property
    def maps_root(self) -> bool:
        """The command runs in a user namespace of its own, its ids mapped to MAPPED_ID_BASE onwards."""
        if self.uses_user_namespace:
            return False
        return not (self.chroot_root is not None if self.host_root is None else self.host_root)

    @property
    def clone_flags(self) -> int:
        flags = sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
        if not self.network:
            flags |= sc.CLONE_NEWNET
        if self.uses_user_namespace:
            flags |= sc.CLONE_NEWUSER
        return flags

    @property
    def plan(self) -> tuple[Operation, ...]:
        return plan(self.operations)


def describe(spec: SandboxSpec) -> list[str]:
    """The plan as lines, in the order the sandbox carries it out."""
    lines = [f"namespaces: {' '.join(sc.namespace_names(spec.clone_flags))}"]
    if spec.uses_user_namespace:
        host = f"host uid {os.geteuid()} gid {os.getegid()}"
        lines.append(f"user: uid {spec.uid} gid {spec.gid} inside, mapped to {host}")
    elif spec.maps_root:
        last = MAPPED_ID_BASE + MAPPED_ID_COUNT - 1
        lines.append(
            f"user: uid {spec.uid} gid {spec.gid} inside a user namespace of the command's own, "
            f"ids 0-{MAPPED_ID_COUNT - 1} mapped to host {MAPPED_ID_BASE}-{last}"
        )
    else:
        lines.append(f"user: uid {spec.uid} gid {spec.gid} (host identity, no user namespace)")
    lines.append("make / rprivate")
    if spec.chroot_root is None:
        lines.append("root: fresh tmpfs")
    else:
        lines.append(f"root: bind rw {spec.chroot_root} -> /")
    lines.extend(op.describe() for op in spec.plan)
    if spec.chroot_root is None:
        lines.append("remount root read-only")
    lines.append(f"hostname: {spec.hostname}")
    lines.append("network: host network" if spec.network else "network: loopback only (lo up)")
    lines.append("pivot_root into the new root, detach the old root")
    lines.append(f"cwd: {spec.cwd}")
    if spec.env:
        lines.extend(f"env: {key}={value}" for key, value in sorted(spec.env.items()))
    else:
        lines.append("env: (empty)")
    lines.append(
        "privileges: capabilities "
        + " ".join(KEPT_CAPABILITIES.values())
        + " only; no_new_privs; seccomp filter"
    )
    limits = [f"{k} {v}" for k, v in (("memory", spec.limits.memory), ("pids", spec.limits.pids)) if v]
    if limits:
        support = cgroup.detect()
        how = (
            f"a cgroup v2 group of its own under {support.parent}"
            if support.usable
            else f"RLIMIT_AS and RLIMIT_NPROC; cgroup v2 not used: {support.reason}"
        )
        lines.append("limits: " + ", ".join(limits) + f" (by {how})")
    lines.append("run: the command as the child of an init (PID 1) that reaps and forwards its exit code")
    return lines
