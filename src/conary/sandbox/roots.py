"""Ready-made operation lists: the host seed toolchain, a sysroot, the base system mounts."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from conary.sandbox.errors import SandboxError
from conary.sandbox.ops import Bind, Dev, Operation, Overlay, Proc, Symlink, Tmpfs, WriteFile
from conary.sandbox.privileges import Limits
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


@dataclass(frozen=True)
class _Entry:
    """One name in one layer: a directory, file or symlink on the host, or (for the host seed's /etc)
    a directory made of chosen entries only, whose *children* are listed instead of read from disk."""

    kind: str  # "dir", "file", "link" or "chosen"
    source: str  # host path; for "link" the link's target
    children: Mapping[str, _Entry] | None = None


_Layer = Mapping[str, "_Entry"]


def _entry(path: str) -> _Entry | None:
    if os.path.islink(path):
        return _Entry("link", os.readlink(path))
    if os.path.isdir(path):
        return _Entry("dir", path)
    if os.path.isfile(path):
        return _Entry("file", path)
    return None  # sockets, devices, dangling: nothing a toolchain reads


def _host_seed_layer(host: str = "/") -> dict[str, _Entry]:
    host = host.rstrip("/")
    layer: dict[str, _Entry] = {"usr": _Entry("dir", f"{host}/usr")}
    for name in _TOP_LEVEL:
        found = _entry(f"{host}/{name}")
        if found is not None and found.kind != "file":
            layer[name] = found
    names = [*_HOST_ETC, *(os.path.basename(p) for p in sorted(glob.glob(f"{host}/etc/python3*")))]
    etc = {n: e for n in names if (e := _entry(f"{host}/etc/{n}")) is not None}
    layer["etc"] = _Entry("chosen", f"{host}/etc", etc)
    return layer


def _root_layer(path: str | os.PathLike[str]) -> dict[str, _Entry]:
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise SandboxError("sysroot is not a directory", where=root)
    layer = {}
    for name in sorted(os.listdir(root)):
        if name not in _SANDBOX_OWNED and (found := _entry(f"{root}/{name}")) is not None:
            layer[name] = found
    return layer


def _children(entry: _Entry) -> Mapping[str, _Entry]:
    if entry.children is not None:
        return entry.children
    found = ((name, _entry(f"{entry.source}/{name}")) for name in sorted(os.listdir(entry.source)))
    return {name: e for name, e in found if e is not None}


def _describe_entry(entry: _Entry) -> str:
    if entry.kind == "link":
        return f"a symlink to {entry.source}"
    return f"a {'file' if entry.kind == 'file' else 'directory'} in {os.path.dirname(entry.source)}"


def _union(layers: Sequence[_Layer], dest: str) -> list[Operation]:
    """Operations showing *layers* (top first) as one read-only tree at *dest*."""
    ops: list[Operation] = []
    names = sorted({name for layer in layers for name in layer})
    for name in names:
        path = f"{dest.rstrip('/')}/{name}"
        entries = [layer[name] for layer in layers if name in layer]
        top = entries[0]
        kind = "dir" if top.kind == "chosen" else top.kind
        for other in entries[1:]:
            if ("dir" if other.kind == "chosen" else other.kind) != kind:
                raise SandboxError(
                    f"root layers disagree on {path}: {_describe_entry(top)}, {_describe_entry(other)}",
                    where=path,
                    hint="give the layers the same layout (merged-/usr symlinks or real directories)",
                )
        if kind == "link":
            ops.append(Symlink(top.source, path))
        elif kind == "file" or (len(entries) == 1 and top.kind == "dir"):
            ops.append(Bind(top.source, path))
        elif any(e.kind == "chosen" for e in entries):
            # A hand-picked directory cannot be an overlay layer: union its entries one level down.
            ops.extend(_union([_children(e) for e in entries], path))
        else:
            ops.append(Overlay(tuple(e.source for e in entries), path))
    return ops


def _identity_ops(layers: Sequence[_Layer]) -> list[Operation]:
    """The fresh minimal /etc identity, where no layer's /etc brings its own."""
    etcs = [layer["etc"] for layer in layers if "etc" in layer]
    if not etcs:
        return list(etc_ops())
    if not any(e.kind == "chosen" for e in etcs):
        return []  # /etc is a layer's own (bound or overlaid whole): it is that root's identity
    provided = {name for e in etcs for name in _children(e)}
    return [op for op in etc_ops() if op.dest.removeprefix("/etc/") not in provided]


def layered_root_ops(
    layers: Sequence[str | os.PathLike[str]] = (), *, host_seed: bool = False, host: str = "/"
) -> tuple[Operation, ...]:
    """The toolchain root made of several roots (top first) shown as one read-only union.

    Each top-level entry present in one layer is bound read-only; a directory present in several is
    an overlayfs of them (the upper one wins on a clash); symlinks (merged /usr: `bin -> usr/bin`) come
    from the first layer that has the name; a directory in one layer and a symlink in another is an
    error. *host_seed* puts the host toolchain (`host_toolchain_ops`) at the bottom, under the roots.
    Entries the sandbox provides itself (proc, dev, tmp, …) are skipped. Where no layer has an /etc,
    or only the host seed's chosen entries, the fresh minimal identity (`etc_ops`) fills it."""
    stack: list[_Layer] = [_root_layer(path) for path in layers]
    if host_seed:
        stack.append(_host_seed_layer(host))
    if not stack:
        raise SandboxError("a root needs at least one layer or the host seed")
    return (*_union(stack, "/"), *_identity_ops(stack))


def host_toolchain_ops(host: str = "/") -> tuple[Operation, ...]:
    """The Stage0 seed: the host's /usr read-only, its top-level links as they are, and the few /etc
    entries compilers and interpreters read. /root, /home and the rest of /etc stay invisible."""
    return layered_root_ops(host_seed=True, host=host)


def sysroot_ops(path: str | os.PathLike[str]) -> tuple[Operation, ...]:
    """A built root used as the toolchain: each of its top-level entries mirrored read-only.

    Symlinks (merged /usr) are recreated as they are; directories are bound read-only. Entries the
    sandbox provides itself (proc, dev, tmp, …) are skipped. Without its own /etc the sysroot gets the
    fresh minimal one."""
    return layered_root_ops([path])


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
    sysroot: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    host_seed: bool = False,
    env: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    cwd: str = "/build",
    extra_ops: Iterable[Operation] = (),
) -> SandboxSpec:
    """The hermetic build sandbox: base mounts, the toolchain root, /build and /destdir read-write, no
    network, a cleared environment (*env*, or `minimal_env()`).

    The toolchain root is *sysroot* (one root, or several, top first, shown as one read-only union;
    see `layered_root_ops`) with the host seed at the bottom when *host_seed* is true. Without a
    sysroot it is the host seed alone."""
    if sysroot is None:
        layers: list[str | os.PathLike[str]] = []
    elif isinstance(sysroot, (str, os.PathLike)):
        layers = [sysroot]
    else:
        layers = list(sysroot)
    toolchain = layered_root_ops(layers, host_seed=host_seed or not layers)
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
        limits=limits or Limits(),
    )
