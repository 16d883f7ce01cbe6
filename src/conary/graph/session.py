"""A graph build's shared view: the graph, the checkpoint store, keys and build roots.

Keys are computed in dependency order: a package's key needs its dependencies' output digests,
which come from their checkpoints. Every process (the scheduler and each cook worker) computes the
same keys from the same store, so nothing but the store and the repository is shared.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from conary.ccs import PublicKey, ensure_default_key, load_public_key, load_signing_key
from conary.errors import InputError
from conary.fsutil import fsync_dir
from conary.graph.keys import Key, KeyContext, derivation_key, output_digest_of_manifest, read_manifest
from conary.graph.model import Graph, build_graph, load_recipes
from conary.graph.plan import BuildRequest
from conary.graph.roots import BuildRoot, RootPackage, assemble_root
from conary.graph.store import Checkpoint, CheckpointStore, kept_package

HOST_DPKG_STATUS = Path("/var/lib/dpkg/status")


def package_files(paths: tuple[Path, ...], what: str) -> list[Path]:
    """The .ccs files named, or found (sorted) in the directories named."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(path.glob("*.ccs")))
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(
                f"{what} not found", where=str(path), hint="give a .ccs file or a directory of them"
            )
    return out


def host_provides(status: Path = HOST_DPKG_STATUS) -> frozenset[str] | None:
    """Names of the host's installed Debian packages and what they provide; None when unknown."""
    try:
        text = status.read_text(errors="replace")
    except OSError:
        return None
    names: set[str] = set()
    for stanza in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" ")
        )
        if "installed" not in fields.get("Status", ""):
            continue
        names.add(fields.get("Package", ""))
        for item in fields.get("Provides", "").split(","):
            if item.strip():
                names.add(item.split("(")[0].strip())
    names.discard("")
    return frozenset(names)


class Session:
    def __init__(self, request: BuildRequest, store: CheckpointStore | None = None) -> None:
        self.request = request
        self.state = Path(request.state)
        self.store = store or CheckpointStore(self.state)
        self.base_packages = [
            RootPackage(p, output_digest_of_manifest(m), provides)
            for p, m, provides in self._read(package_files((*request.seed, *request.base), "seed package"))
        ]
        provides: set[str] = set()
        for pkg in self.base_packages:
            provides.update(pkg.provides)
        seed_provides: frozenset[str] | None = frozenset(provides)
        if request.host_seed:
            host = host_provides()
            seed_provides = None if host is None else seed_provides | host
        self.graph: Graph = build_graph(
            load_recipes(request.recipes),
            seed_provides=seed_provides,
            break_edges=request.break_edges,
            weights=self.store.durations(),
        )
        base_lines = [f"base:{p.name}:{p.digest}" for p in self.base_packages]
        if request.host_seed:
            base_lines.append("seed:host")
        self.context = KeyContext(
            stage=request.stage, target=request.target, toolchain=request.toolchain, base=tuple(base_lines)
        )
        self._keys: dict[str, Key] = {}

    @staticmethod
    def _read(paths: list[Path]) -> Iterator[tuple[Path, object, tuple[str, ...]]]:
        for path in paths:
            manifest = read_manifest(path)
            provides = (manifest.name, *(str(d).split(" ")[0] for d in manifest.provides))
            yield path, manifest, provides

    # ------------------------------------------------------------------ keys

    def key(self, name: str) -> Key | None:
        """NAME's key, or None while a dependency has no checkpoint for its own key."""
        if name in self._keys:
            return self._keys[name]
        node = self.graph.nodes[name]
        digests: dict[str, str] = {}
        for dep in node.deps:
            cp = self.checkpoint(dep)
            if cp is None:
                return None
            digests[dep] = cp.output_digest
        key = derivation_key(node.recipe, node.path.resolve().parent, self.context, digests)
        self._keys[name] = key
        return key

    def checkpoint(self, name: str) -> Checkpoint | None:
        key = self.key(name)
        return None if key is None else self.store.get(key.digest)

    def forget(self, name: str) -> None:
        self._keys.pop(name, None)

    # ------------------------------------------------------------------ packages

    def is_present(self, checkpoint: Checkpoint) -> bool:
        """The kept copy of a checkpoint's package exists (the row alone is not enough)."""
        return kept_package(self.state, checkpoint.key).is_file()

    def publish(self, checkpoint: Checkpoint) -> None:
        """Make the repository's NAME file the checkpoint's package (a later rebuild of the name,
        since reverted, may have replaced it). The same inode means nothing to do."""
        kept = kept_package(self.state, checkpoint.key)
        target = Path(self.request.output) / checkpoint.package
        try:
            if os.stat(target).st_ino == os.stat(kept).st_ino:
                return
            if _sha256(target) == checkpoint.package_sha256:
                return
        except FileNotFoundError:
            pass
        place(kept, target)

    # ------------------------------------------------------------------ roots

    def signing_public_key(self) -> PublicKey:
        if self.request.signing_key is not None:
            return load_signing_key(self.request.signing_key).public_key
        return ensure_default_key()[0].public_key

    def trusted(self) -> list[PublicKey]:
        return [self.signing_public_key(), *(load_public_key(p) for p in self.request.trusted_keys)]

    def build_root(self, name: str) -> BuildRoot:
        """The layers NAME's steps run on: its dependencies' root over the stage's base root."""
        node = self.graph.nodes[name]
        deps: list[RootPackage] = []
        for dep in self.graph.runtime_closure(node.deps):
            cp = self.checkpoint(dep)
            assert cp is not None, f"{dep} is built before {name}"
            deps.append(RootPackage(kept_package(self.state, cp.key), cp.output_digest, ()))
        cache = self.state / "roots"
        trusted = self.trusted()
        layers: list[Path] = []
        if deps:
            layers.append(assemble_root(cache, deps, trusted))
        if self.base_packages:
            layers.append(assemble_root(cache, self.base_packages, trusted))
        if not layers and not self.request.host_seed:
            raise InputError(
                f"{name} has nothing to build with: no build dependencies and no seed",
                where=str(node.path),
                hint="give a seed: --seed host, or --seed with the seed's .ccs packages",
            )
        return BuildRoot(tuple(layers), self.request.host_seed)


def place(source: Path, target: Path) -> None:
    """Put *source* at *target* atomically: a hard link when they share a filesystem, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def clean_partial_files(directory: Path) -> None:
    """Remove the temporary names `place` uses that a killed run left in DIRECTORY."""
    if directory.is_dir():
        for entry in directory.glob(".*.tmp"):
            entry.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
