"""The hermetic sandbox: run one command in fresh namespaces over a root described as data.

Knows nothing about recipes. A caller describes the sandbox as a `SandboxSpec` (a tuple of filesystem
operations plus identity, network and environment), can print the plan with `describe(spec)`, and runs
a command with `run(spec, argv)`, which returns its exit code.

    spec = build_spec(build_dir, destdir, env={...})           # host seed toolchain, /build, /destdir
    code = run(spec, ["sh", "-c", "make"], stdout=log, stderr=log, timeout=3600)

    # scriptlets: chrooted into an existing root
    spec = SandboxSpec(operations=base_ops(), chroot_root=target, env=minimal_env())

Operations (frozen dataclasses with `execute(newroot, context)` and `describe()`):
    Bind(source, dest, readonly=True)  Tmpfs(dest, mode=0o755)  Proc(dest="/proc")  Dev(dest="/dev")
    Dir(dest, mode=0o755)  Symlink(target, dest)  WriteFile(dest, content, mode=0o644)
    Overlay(lowers, dest)  (read-only union of host directories, top first)
"""

from __future__ import annotations

from conary.sandbox.errors import SandboxError, SandboxTimeout
from conary.sandbox.ops import (
    Bind,
    Context,
    Dev,
    Dir,
    Operation,
    Overlay,
    Proc,
    Symlink,
    Tmpfs,
    WriteFile,
    plan,
)
from conary.sandbox.privileges import KEPT_CAPABILITIES, Limits
from conary.sandbox.roots import (
    base_ops,
    build_spec,
    etc_ops,
    host_network_ops,
    host_toolchain_ops,
    layered_root_ops,
    minimal_env,
    sysroot_ops,
)
from conary.sandbox.runner import run
from conary.sandbox.spec import DEFAULT_HOSTNAME, DEFAULT_PATH, SandboxSpec, describe
from conary.sandbox.support import check_support

__all__ = [
    "DEFAULT_HOSTNAME",
    "DEFAULT_PATH",
    "KEPT_CAPABILITIES",
    "Bind",
    "Context",
    "Dev",
    "Dir",
    "Limits",
    "Operation",
    "Overlay",
    "Proc",
    "SandboxError",
    "SandboxSpec",
    "SandboxTimeout",
    "Symlink",
    "Tmpfs",
    "WriteFile",
    "base_ops",
    "build_spec",
    "check_support",
    "describe",
    "etc_ops",
    "host_network_ops",
    "host_toolchain_ops",
    "layered_root_ops",
    "minimal_env",
    "plan",
    "run",
    "sysroot_ops",
]
