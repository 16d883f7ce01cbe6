"""The data a CCS package carries: identity, files, components, dependencies and the manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

FORMAT_VERSION = 1

# Dependency kinds, in the order the manifest sorts them.
DEPENDENCY_KINDS = ("package", "soname", "binary", "pkgconfig", "file", "interpreter")
FILE_TYPES = ("file", "dir", "symlink")
SCRIPTLET_NAMES = ("pre_install", "post_install", "pre_remove", "post_remove")
METADATA_KEYS = ("summary", "description", "license", "homepage")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class PackageMeta:
    """What the packager states about a package; everything else comes from the file tree."""

    name: str
    version: str
    release: str = "1"
    arch: str = "x86_64"
    summary: str = ""
    description: str = ""
    license: str = ""
    homepage: str = ""

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}"


@dataclass(frozen=True, order=True)
class Dependency:
    """A typed capability: something a package provides or requires.

    Resolvers match a requirement to a provide by ``(kind, name)``; ``version`` is informative
    (the provide's version, or a requirement's constraint such as ``>= 1.2``), "" when none.
    """

    kind: str
    name: str
    version: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def __str__(self) -> str:
        text = f"{self.kind}({self.name})"
        return f"{text} {self.version}" if self.version else text


@dataclass(frozen=True)
class FileEntry:
    """One filesystem entry of a package. ``path`` is relative POSIX without a leading slash."""

    path: str
    type: str  # "file" | "dir" | "symlink"
    mode: int  # permission bits (0o7777 at most); symlinks carry 0o777
    uid: int = 0
    gid: int = 0
    size: int = 0
    sha256: str = ""  # hex of the whole file content; "" for dirs and symlinks
    chunks: tuple[str, ...] = ()  # object ids (sha256 hex of each uncompressed chunk), in order
    target: str = ""  # symlink target, "" otherwise
    component: str = "runtime"
    config: bool = False

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_symlink(self) -> bool:
        return self.type == "symlink"


@dataclass(frozen=True)
class Component:
    """A named slice of a package that can be installed on its own (``pkg:devel``)."""

    name: str
    default: bool
    root: str  # Merkle root (sha256 hex) over the component's file records


@dataclass(frozen=True)
class Manifest:
    """The signed description of a package (the MANIFEST entry of a .ccs file)."""

    format_version: int
    name: str
    version: str
    release: str
    arch: str
    metadata: Mapping[str, str]
    files: tuple[FileEntry, ...]
    components: tuple[Component, ...]
    provides: tuple[Dependency, ...]
    requires: tuple[Dependency, ...]
    scriptlets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    provenance: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    content_root: str = ""
    source_date_epoch: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))
        object.__setattr__(self, "scriptlets", _frozen_mapping(self.scriptlets))
        object.__setattr__(self, "provenance", _frozen_mapping(self.provenance))

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}"

    @property
    def summary(self) -> str:
        return self.metadata.get("summary", "")

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def files_in(self, component: str) -> tuple[FileEntry, ...]:
        return tuple(f for f in self.files if f.component == component)

    @property
    def default_components(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.default)

    @property
    def object_ids(self) -> frozenset[str]:
        return frozenset(chunk for f in self.files for chunk in f.chunks)

    @property
    def installed_size(self) -> int:
        return sum(f.size for f in self.files)
