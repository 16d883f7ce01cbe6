"""The recipe model: frozen dataclasses mirroring the sections of a recipe TOML file.

Sequences are tuples and mappings are tuples of (key, value) pairs, so a Recipe is immutable and
hashable; `dict(recipe.build.environment)` gives a mapping when one is needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conary.recipe.macros import MacroContext

Pairs = tuple[tuple[str, str], ...]

STEP_NAMES = ("setup", "configure", "make", "check", "install", "post_install")
CROSS_STAGES = ("stage0", "stage1", "stage2", "final")
CROSS_TOOLS = ("cc", "cxx", "ar", "ld", "ranlib", "nm", "strip")
COMPONENT_NAMES = ("devel", "doc", "lib", "runtime", "config", "debuginfo", "exclude")


@dataclass(frozen=True)
class Checksum:
    """A pinned digest such as sha256:<64 hex digits>; the hex digest is stored lower-case."""

    algo: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algo}:{self.hexdigest}"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    release: str = "1"
    summary: str | None = None
    description: str | None = None
    license: str | None = None
    homepage: str | None = None


@dataclass(frozen=True)
class AdditionalSource:
    url: str
    checksum: Checksum
    extract: bool = True
    extract_to: str | None = None
    debian: str | None = None


@dataclass(frozen=True)
class Source:
    """Either an `archive` pinned by `checksum`, or a local tree at `path`. `debian` names the
    Debian source package that ships the same bytes, for the Debian source-archive provider."""

    archive: str | None = None
    checksum: Checksum | None = None
    path: str | None = None
    signature: str | None = None
    debian: str | None = None
    extract: bool = True
    extract_dir: str | None = None
    additional: tuple[AdditionalSource, ...] = ()


@dataclass(frozen=True)
class SanityCheck:
    script: str


@dataclass(frozen=True)
class Build:
    requires: tuple[str, ...] = ()
    makedepends: tuple[str, ...] = ()
    setup: str | None = None
    configure: str | None = None
    make: str | None = None
    check: str | None = None
    install: str | None = None
    post_install: str | None = None
    environment: Pairs = ()
    workdir: str | None = None
    jobs: int | None = None
    timeout: int | None = None  # seconds each step may run; None: the cook's default
    stage: str | None = None
    chroot: bool = False
    check_optional: bool = False
    sanity_check: SanityCheck | None = None

    def steps(self) -> tuple[tuple[str, str], ...]:
        """The steps the recipe defines, in the order a cook runs them: (name, script)."""
        return tuple((name, script) for name in STEP_NAMES if (script := getattr(self, name)) is not None)


@dataclass(frozen=True)
class Cross:
    target: str | None = None
    sysroot: str | None = None
    cross_tools: str | None = None
    stage: str | None = None
    tool_prefix: str | None = None
    cc: str | None = None
    cxx: str | None = None
    ar: str | None = None
    ld: str | None = None
    ranlib: str | None = None
    nm: str | None = None
    strip: str | None = None


@dataclass(frozen=True)
class Patch:
    """A patch applied with `patch -p<strip>`; `file` is a URL or a path relative to the recipe."""

    file: str
    checksum: Checksum | None = None
    strip: int = 1


@dataclass(frozen=True)
class Components:
    """Glob overrides for the component split, matched against absolute package paths."""

    devel: tuple[str, ...] = ()
    doc: tuple[str, ...] = ()
    lib: tuple[str, ...] = ()
    runtime: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    debuginfo: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviationChange:
    flag: str
    reason: str
    lfs: str | None = None
    conary: str | None = None


@dataclass(frozen=True)
class Deviations:
    lfs_section: str | None = None
    lfs_url: str | None = None
    changes: tuple[DeviationChange, ...] = ()


@dataclass(frozen=True)
class Recipe:
    package: Package
    source: Source
    build: Build = field(default_factory=Build)
    cross: Cross | None = None
    patches: tuple[Patch, ...] = ()
    components: Components = field(default_factory=Components)
    variables: Pairs = ()
    deviations: Deviations | None = None
    path: str = "<string>"
    text_sha256: str = ""
    raw_text: str = field(default="", repr=False, compare=False)
    expanded: bool = False

    @property
    def is_cross(self) -> bool:
        return self.cross is not None and any(
            (self.cross.target, self.cross.sysroot, self.cross.cross_tools, self.cross.tool_prefix)
        )

    @property
    def nvr(self) -> str:
        return f"{self.package.name}-{self.package.version}-{self.package.release}"

    def expand(self, context: MacroContext | None = None) -> Recipe:
        """A copy with every %(macro)s expanded; see conary.recipe.macros for what is expanded."""
        from conary.recipe.macros import expand_recipe  # breaks a cycle: macros imports this module

        return expand_recipe(self, context)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: pairs become tables, checksums strings; raw_text is left out."""
        return _jsonable(self)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Checksum):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            if f.name == "raw_text":
                continue
            item = getattr(value, f.name)
            if f.name in ("environment", "variables"):
                out[f.name] = dict(item)
            else:
                out[f.name] = _jsonable(item)
        return out
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
