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


def snapshot_tree(
    root: str | os.PathLike[str], exclude: tuple[str, ...] = ("var/lib/conary", "conary")
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


def build(
    workdir: Path,
    keys: Keys,
    name: str,
    version: str,
    spec: TreeSpec,
    *,
    release: str = "1",
    scriptlets: Mapping[str, str] | None = None,
) -> Path:
    """A real signed .ccs of SPEC, written under WORKDIR/out."""
    tree = workdir / "trees" / f"{name}-{version}-{release}"
    write_tree(tree, spec)
    return build_package(
        tree,
        PackageMeta(name, version, release),
        output_dir=workdir / "out",
        signing_key=keys.secret,
        scriptlets=scriptlets,
        split_debug=False,
    )


def expected_tree(base: Mapping[str, tuple[object, ...]], *specs: TreeSpec) -> dict[str, tuple[object, ...]]:
    """The snapshot a root should have: BASE plus the entries of SPECS (and their parent dirs)."""
    out = dict(base)
    for spec in specs:
        for rel, value in spec.items():
            parts = rel.split("/")
            for i in range(1, len(parts)):
                out.setdefault("/".join(parts[:i]), ("dir", 0o755, 0, 0, ""))
            if isinstance(value, bytes):
                out[rel] = ("file", 0o644, 0, 0, hashlib.sha256(value).hexdigest())
            elif value[0] == "file":  # type: ignore[index]
                out[rel] = ("file", value[2], 0, 0, hashlib.sha256(value[1]).hexdigest())  # type: ignore[index]
            elif value[0] == "symlink":  # type: ignore[index]
                out[rel] = ("symlink", 0o777, 0, 0, value[1])  # type: ignore[index]
            else:
                out[rel] = ("dir", value[1], 0, 0, "")  # type: ignore[index]
    return dict(sorted(out.items()))


def new_root(path: Path, keys: Keys) -> Path:
    """An initialised root that trusts KEYS."""
    from conary.runtime import init_root

    path.mkdir(parents=True, exist_ok=True)
    init_root(path)
    trust(path, keys)
    return path


def write_raw_package(out: Path, keys: Keys, name: str, entries: list[tuple[str, str, bytes | str]]) -> Path:
    """A correctly signed .ccs whose manifest is whatever ENTRIES say, checks or not.

    ENTRIES are (path, type, content-or-target); only small files (one object each). This builds what
    a hostile packager could: it goes around build_package's own checks on purpose.
    """
    import zstandard

    from conary.ccs import Component, FileEntry, Manifest, component_root, content_root, encode_manifest
    from conary.ccs.model import FORMAT_VERSION
    from conary.ccs.sign import encode_signature
    from conary.ccs.tarfmt import end_of_archive, make_header, padding

    files = []
    objects: dict[str, bytes] = {}
    for path, kind, payload in entries:
        if kind == "file":
            data = payload if isinstance(payload, bytes) else payload.encode()
            sha = hashlib.sha256(data).hexdigest()
            objects[sha] = zstandard.ZstdCompressor(write_content_size=True).compress(data)
            files.append(FileEntry(path, "file", 0o644, 0, 0, len(data), sha, (sha,), "", "runtime", False))
        elif kind == "symlink":
            files.append(FileEntry(path, "symlink", 0o777, 0, 0, 0, "", (), str(payload), "runtime", False))
        else:
            files.append(FileEntry(path, "dir", 0o755, 0, 0, 0, "", (), "", "runtime", False))
    files.sort(key=lambda f: f.path.encode())
    components = (Component("runtime", True, component_root(files)),)
    manifest = Manifest(
        FORMAT_VERSION,
        name,
        "1",
        "1",
        "x86_64",
        {},
        tuple(files),
        components,
        (),
        (),
        content_root=content_root(components),
    )
    from conary.ccs import load_signing_key

    data = encode_manifest(manifest)
    sig = encode_signature(load_signing_key(keys.secret), data)
    blob = bytearray()
    for member, payload_bytes in [
        ("MANIFEST", data),
        ("MANIFEST.sig", sig),
        *((f"objects/{k[:2]}/{k[2:]}", v) for k, v in sorted(objects.items())),
    ]:
        blob += make_header(member, len(payload_bytes), 0) + payload_bytes + padding(len(payload_bytes))
    blob += end_of_archive(len(blob))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(blob))
    return out
