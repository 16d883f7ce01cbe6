"""Ready-made operation lists: the host seed toolchain, a sysroot, the base system mounts."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping

from conary.sandbox.errors import SandboxError
from conary.sandbox.ops import Bind, Dev, Operation, Proc, Symlink, Tmpfs, WriteFile
from conary.sandbox.spec import DEFAULT_PATH, SandboxSpec

# Top-level entries that are symlinks into /usr on a merged-/usr host (Debian 12), real dirs elsewhere.
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The few host /etc entries a toolchain reads. Never /etc wholesale: it holds the host's identity.
_HOST_ETC = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "perl")
# Entries of a sysroot the sandbox provides itself (or must never show).
_SANDBOX_OWNED = frozenset(
    {"proc", "dev", "sys", "tmp", "run", "root", "home", "lost+found", "build", "destdir"}
)

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


def base_ops() -> tuple[Operation, ...]:
    """What every sandbox needs whatever its root: a fresh /proc, a minimal /dev and a scratch /tmp."""
    return (Proc("/proc"), Dev("/dev"), Tmpfs("/tmp", 0o1777))


def etc_ops() -> tuple[Operation, ...]:
    """A fresh minimal /etc identity: root and nobody, localhost, files-only name service."""
    return (
        WriteFile("/etc/passwd", PASSWD),
        WriteFile("/etc/group", GROUP),
        WriteFile("/etc/hosts", HOSTS),
        WriteFile("/etc/nsswitch.conf", NSSWITCH),
        Symlink("../proc/self/mounts", "/etc/mtab"),
    )


def host_toolchain_ops(host: str = "/") -> tuple[Operation, ...]:
    """The Stage0 seed: the host's /usr read-only, its top-level links as they are, and the few /etc
    entries compilers and interpreters read. /root, /home and the rest of /etc stay invisible."""
    host = host.rstrip("/")
    ops: list[Operation] = [Bind(f"{host}/usr", "/usr")]
    for name in _TOP_LEVEL:
        path = f"{host}/{name}"
        if os.path.islink(path):
            ops.append(Symlink(os.readlink(path), f"/{name}"))
        elif os.path.isdir(path):
            ops.append(Bind(path, f"/{name}"))
    etc = [*_HOST_ETC, *(os.path.basename(p) for p in sorted(glob.glob(f"{host}/etc/python3*")))]
    ops.extend(
        Bind(f"{host}/etc/{name}", f"/etc/{name}") for name in etc if os.path.exists(f"{host}/etc/{name}")
    )
    ops.extend(etc_ops())
    return tuple(ops)


def sysroot_ops(path: str | os.PathLike[str]) -> tuple[Operation, ...]:
    """A built root used as the toolchain: each of its top-level entries mirrored read-only.

    Symlinks (merged /usr) are recreated as they are; directories are bound read-only. Entries the
    sandbox provides itself (proc, dev, tmp, …) are skipped. Without its own /etc the sysroot gets the
    fresh minimal one."""
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise SandboxError("sysroot is not a directory", where=root)
    ops: list[Operation] = []
    for name in sorted(os.listdir(root)):
        if name in _SANDBOX_OWNED:
            continue
        entry = f"{root}/{name}"
        if os.path.islink(entry):
            ops.append(Symlink(os.readlink(entry), f"/{name}"))
        elif os.path.isdir(entry) or os.path.isfile(entry):
            ops.append(Bind(entry, f"/{name}"))
    if not os.path.isdir(f"{root}/etc"):
        ops.extend(etc_ops())
    return tuple(ops)


def host_network_ops(host: str = "/") -> tuple[Operation, ...]:
    """For sandboxes that keep the host network: its resolver configuration and CA certificates."""
    host = host.rstrip("/")
    names = ("resolv.conf", "ssl", "ca-certificates")
    return tuple(Bind(f"{host}/etc/{n}", f"/etc/{n}") for n in names if os.path.exists(f"{host}/etc/{n}"))


def minimal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH and HOME (the writable /tmp), plus *extra*; nothing is taken from the caller's environment."""
    env = {"PATH": DEFAULT_PATH, "HOME": "/tmp"}
    env.update(extra or {})
    return env


def build_spec(
    build_dir: str | os.PathLike[str],
    destdir: str | os.PathLike[str],
    *,
    sysroot: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str = "/build",
    extra_ops: Iterable[Operation] = (),
) -> SandboxSpec:
    """The hermetic build sandbox: base mounts, the toolchain (host seed or *sysroot*), /build and
    /destdir read-write, no network, a cleared environment (*env*, or `minimal_env()`)."""
    toolchain = host_toolchain_ops() if sysroot is None else sysroot_ops(sysroot)
    return SandboxSpec(
        operations=(
            *base_ops(),
            *toolchain,
            Bind(os.path.abspath(build_dir), "/build", readonly=False),
            Bind(os.path.abspath(destdir), "/destdir", readonly=False),
            *extra_ops,
        ),
        env=minimal_env() if env is None else env,
        cwd=cwd,
    )
