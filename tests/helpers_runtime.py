"""Helpers for the runtime tests: real signed packages, trusted keys, and exact tree snapshots."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from conary.ccs import PackageMeta, build_package, generate_keypair, load_public_key

# A tree spec maps a relative path to: bytes (a file, mode 0644), ("file", bytes, mode),
# ("symlink", target) or ("dir", mode).
TreeSpec = Mapping[str, object]


def snapshot_tree(root: str | os.PathLike[str], exclude: tuple[str, ...] = ("var/lib/conary", "conary")
                  ) -> dict[str, tuple[object, ...]]:
    """Every entry under ROOT: path -> (type, mode, uid, gid, sha256 | symlink target)."""
    root = Path(root)
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in sorted(dirnames + filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if any(rel == e or rel.startswith(e + "/") for e in exclude):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0o777, st.st_uid, st.st_gid, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, st.st_uid, st.st_gid, "")
            else:
                digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                out[rel] = ("file", mode, st.st_uid, st.st_gid, digest)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Keys:
    secret: Path
    public: Path


def make_keys(directory: Path) -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    secret, public = generate_keypair(directory / "test.key")
    return Keys(secret, public)


def trust(root: Path, keys: Keys) -> None:
    """Make ROOT trust KEYS (what 'conary key add' does)."""
    key = load_public_key(keys.public)
    directory = root / "etc/conary/keys"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{key.key_id}.pub").write_text(key.to_text())


def write_tree(tree: Path, spec: TreeSpec) -> None:
    tree.mkdir(parents=True, exist_ok=True)
    for rel, value in sorted(spec.items()):
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            path.write_bytes(value)
            path.chmod(0o644)
        elif value[0] == "file":  # type: ignore[index]
            path.write_bytes(value[1])  # type: ignore[index]
            path.chmod(value[2])  # type: ignore[index]
        elif value[0] == "symlink":  # type: ignore[index]
            path.symlink_to(value[1])  # type: ignore[index]
        elif value[0] == "dir":  # type: ignore[index]
            path.mkdir(exist_ok=True)
            path.chmod(value[1])  # type: ignore[index]
        else:
            raise ValueError(f"bad spec for {rel}: {value!r}")


def build(workdir: Path, keys: Keys, name: str, version: str, spec: TreeSpec, *, release: str = "1",
          scriptlets: Mapping[str, str] | None = None) -> Path:
    """A real signed .ccs of SPEC, written under WORKDIR/out."""
    tree = workdir / "trees" / f"{name}-{version}-{release}"
    write_tree(tree, spec)
    return build_package(tree, PackageMeta(name, version, release), output_dir=workdir / "out",
                         signing_key=keys.secret, scriptlets=scriptlets, split_debug=False)
