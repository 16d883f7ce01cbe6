"""What a state is: installed packages (with components) and the exact file tree they imply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from conary.ccs import Dependency, FileEntry, Manifest
from conary.runtime.errors import ConflictError, UnsafePathError
from conary.runtime.layout import PRIVATE_PATHS
from conary.runtime.safefs import check_relpath, parent_of

IMPLICIT_DIR_MODE = 0o755


@dataclass(frozen=True)
class Node:
    """One entry of the tree as the database records it."""

    type: str  # file | dir | symlink
    mode: int
    uid: int = 0
    gid: int = 0
    sha256: str = ""
    size: int = 0
    target: str = ""
    config: bool = False

    @classmethod
    def of(cls, entry: FileEntry) -> Node:
        return cls(
            entry.type, entry.mode, entry.uid, entry.gid, entry.sha256, entry.size, entry.target, entry.config
        )

    def same_content(self, other: Node) -> bool:
        """Equal bytes on disk: type, content and symlink target (metadata aside)."""
        return (self.type, self.sha256, self.target) == (other.type, other.sha256, other.target)

    def same(self, other: Node) -> bool:
        return self.same_content(other) and (self.mode, self.uid, self.gid) == (
            other.mode,
            other.uid,
            other.gid,
        )


@dataclass(frozen=True)
class Owned:
    node: Node
    owners: tuple[str, ...]


@dataclass(frozen=True)
class Selected:
    """One package of a state: its manifest and the components installed from it."""

    manifest_id: int
    manifest: Manifest
    components: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.manifest.name

    # The manifest's identity and capabilities, so a Selected reads like an installed package.
    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def release(self) -> str:
        return self.manifest.release

    @property
    def arch(self) -> str:
        return self.manifest.arch

    @property
    def provides(self) -> tuple[Dependency, ...]:
        return self.manifest.provides

    @property
    def requires(self) -> tuple[Dependency, ...]:
        return self.manifest.requires

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return tuple(self.entries())

    @property
    def label(self) -> str:
        return f"{self.manifest.nevra}[{','.join(self.components)}]"

    def entries(self) -> Iterable[FileEntry]:
        wanted = set(self.components)
        return (f for f in self.manifest.files if f.component in wanted)


@dataclass
class FileMap:
    """path -> Owned, for every file, symlink and directory a set of packages puts in the root."""

    entries: dict[str, Owned] = field(default_factory=dict)

    def get(self, path: str) -> Owned | None:
        return self.entries.get(path)

    def __contains__(self, path: str) -> bool:
        return path in self.entries

    def paths(self) -> set[str]:
        return set(self.entries)


def _is_private(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PRIVATE_PATHS)


def build_filemap(packages: Iterable[Selected]) -> FileMap:
    """Merge the selected entries of PACKAGES, refusing conflicts and unsafe layouts.

    Two packages may share a path only with identical content and metadata (the path is then
    refcounted). Directories are shared freely; the first owner by name decides their mode. Parent
    directories a package does not list are implied (0755, root-owned) and owned by it too.
    """
    explicit: dict[str, tuple[Node, list[str]]] = {}
    implicit: dict[str, list[str]] = {}
    for pkg in sorted(packages, key=lambda p: p.name):
        for entry in pkg.entries():
            check_relpath(entry.path)
            if _is_private(entry.path):
                raise UnsafePathError(
                    "package path is inside the runtime's own state", where=f"{pkg.name}: {entry.path}"
                )
            node = Node.of(entry)
            seen = explicit.get(entry.path)
            if seen is None:
                explicit[entry.path] = (node, [pkg.name])
            elif (node.type == "dir" and seen[0].type == "dir") or seen[0].same(node):
                seen[1].append(pkg.name)
            else:
                raise ConflictError(
                    f"{pkg.name} and {', '.join(seen[1])} both install {entry.path} with different content",
                    where=entry.path,
                    hint="remove one of the packages first, or fix the packaging",
                )
            parent = parent_of(entry.path)
            while parent:
                owners = implicit.setdefault(parent, [])
                if pkg.name in owners:
                    break
                owners.append(pkg.name)
                parent = parent_of(parent)
    out: dict[str, Owned] = {}
    for path, owners in implicit.items():
        seen = explicit.get(path)
        if seen is None:
            out[path] = Owned(Node("dir", IMPLICIT_DIR_MODE), tuple(owners))
        elif seen[0].type != "dir":
            raise UnsafePathError(
                f"a package puts files beneath {path}, which {', '.join(seen[1])} installs as a "
                f"{seen[0].type}",
                where=path,
                hint="nothing may be installed through a symlink or file",
            )
        else:
            merged = list(dict.fromkeys([*seen[1], *owners]))
            out[path] = Owned(seen[0], tuple(merged))
    for path, (node, owners) in explicit.items():
        if path not in out:
            out[path] = Owned(node, tuple(dict.fromkeys(owners)))
    return FileMap(dict(sorted(out.items())))


def components_for(manifest: Manifest, requested: Iterable[str] | None) -> tuple[str, ...]:
    names = {c.name for c in manifest.components}
    if requested is None:
        chosen = set(manifest.default_components) or names
    else:
        chosen = set(requested)
        unknown = chosen - names
        if unknown:
            raise ConflictError(
                f"{manifest.name} has no component {', '.join(sorted(unknown))}",
                where=manifest.nevra,
                hint=f"its components are: {', '.join(sorted(names)) or 'none'}",
            )
    return tuple(sorted(chosen))


def state_key(packages: Mapping[str, Selected]) -> tuple[tuple[int, tuple[str, ...]], ...]:
    return tuple(sorted((p.manifest_id, p.components) for p in packages.values()))
