"""A graph build's shared view: the graph, the checkpoint store, keys and build roots.

Keys are computed in dependency order: a package's key needs its dependencies' output digests,
which come from their checkpoints. Every process (the scheduler and each cook worker) computes the
same keys from the same store, so nothing but the store and the repository is shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from conary.ccs import PublicKey, ensure_default_key, load_public_key, load_signing_key
from conary.errors import InputError
from conary.fsutil import fsync_dir
from conary.graph.keys import Key, KeyContext, derivation_key, output_digest_of_manifest, read_manifest
from conary.graph.loader import load_infos, signature
from conary.graph.model import Graph, build_graph
from conary.graph.plan import BuildRequest
from conary.graph.roots import BuildRoot, RootPackage, assemble_root
from conary.graph.store import Checkpoint, CheckpointStore, kept_package
from conary.graph.unverified import source_cache, unverified_lines

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


class SeedProvides:
    """What the seed provides: its packages' names and typed provides, and with the host as the
    seed the host's Debian packages (read only when a requirement is not met otherwise)."""

    def __init__(self, packages: frozenset[str], host: bool) -> None:
        self.packages = packages
        self.host = host
        self._host: frozenset[str] | None = None
        self._host_read = False

    def __contains__(self, item: object) -> bool:
        if item in self.packages:
            return True
        if not self.host:
            return False
        if not self._host_read:
            self._host, self._host_read = host_provides(), True
        return self._host is None or item in self._host  # an unknown host provides anything


class Session:
    def __init__(self, request: BuildRequest, store: CheckpointStore | None = None) -> None:
        self.request = request
        self.state = Path(request.state)
        self.store = store or CheckpointStore(self.state)
        self.base_packages = self._base_packages(
            package_files((*request.seed, *request.base), "seed package")
        )
        provides: set[str] = set()
        for pkg in self.base_packages:
            provides.update(pkg.provides)
        base_lines = [f"base:{p.name}:{p.digest}" for p in self.base_packages]
        if request.host_seed:
            base_lines.append("seed:host")
        self.context = KeyContext(
            stage=request.stage, target=request.target, toolchain=request.toolchain, base=tuple(base_lines)
        )
        self.graph: Graph = build_graph(
            load_infos(request.recipes, self.context, self.store),
            seed_provides=SeedProvides(frozenset(provides), request.host_seed),
            break_edges=request.break_edges,
            weights=self.store.durations(),
        )
        self._keys: dict[str, Key] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._state_packages = os.fspath(self.state / "packages")
        self._output = os.fspath(request.output)
        self._sources = source_cache(request)

    def _base_packages(self, paths: list[Path]) -> list[RootPackage]:
        """The seed's and base's packages with their output digests and provides. A package is
        opened and verified only when its file changed since the store last read it: a seed of
        hundreds of packages costs a stat each on every run, not a verification each."""
        cached = self.store.package_cache()
        fresh: list[tuple[str, str, str, str]] = []
        out: list[RootPackage] = []
        for path in paths:
            absolute, sig = os.path.abspath(path), signature(path)
            entry = cached.get(absolute)
            if entry is not None and entry[0] == sig:
                digest, provides = entry[1], tuple(json.loads(entry[2]))
            else:
                manifest = read_manifest(path)
                digest = output_digest_of_manifest(manifest)
                provides = (manifest.name, *(f"{d.kind}({d.name})" for d in manifest.provides))
                fresh.append((absolute, sig, digest, json.dumps(provides)))
            out.append(RootPackage(path, digest, provides))
        if fresh:
            self.store.put_package_cache(fresh)
        return out

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
        key = derivation_key(self.recipe_lines(name), self.context, digests)
        self._keys[name] = key
        return key

    def recipe_lines(self, name: str) -> tuple[str, ...]:
        """NAME's own key lines: its recipe's, and with --skip-verify the unverified bytes it uses."""
        lines = self.graph.nodes[name].lines
        if self.request.skip_verify:
            lines = (*lines, *unverified_lines(lines, self._sources))
        return lines

    def checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint of NAME's current key, if any. A row found is remembered (rows are never
        changed); a miss is asked again, since a cook may have committed it since."""
        key = self.key(name)
        if key is None:
            return None
        cp = self._checkpoints.get(key.digest)
        if cp is None:
            cp = self.store.get(key.digest)
            if cp is not None:
                self._checkpoints[key.digest] = cp
        return cp

    def preload(self) -> None:
        """Read every checkpoint of the store's packages in one query (a no-op run's lookups)."""
        self._checkpoints.update(self.store.checkpoints_of(self.graph.nodes))

    def forget(self, name: str) -> None:
        self._keys.pop(name, None)

    # ------------------------------------------------------------------ packages

    def is_present(self, checkpoint: Checkpoint) -> bool:
        """The kept copy of a checkpoint's package exists (the row alone is not enough)."""
        return os.path.isfile(f"{self._state_packages}/{checkpoint.key}.ccs")

    def publish(self, checkpoint: Checkpoint) -> bool:
        return publish(self._state_packages, self._output, checkpoint)

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


def publish(packages: str, output: str, checkpoint: Checkpoint) -> bool:
    """Make the repository's NAME file the checkpoint's package (a later rebuild of the name,
    since reverted, may have replaced it); False when the kept package is missing. The same
    inode as the kept copy means nothing to do: two stats per package on a no-op run."""
    kept = f"{packages}/{checkpoint.key}.ccs"
    target = f"{output}/{checkpoint.package}"
    try:
        kept_ino = os.stat(kept).st_ino
    except FileNotFoundError:
        return False
    try:
        if os.stat(target).st_ino == kept_ino or _sha256(Path(target)) == checkpoint.package_sha256:
            return True
    except FileNotFoundError:
        pass
    place(Path(kept), Path(target))
    return True


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
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
