"""Component rules: which slice of a package (runtime, lib, devel, doc, config, debuginfo) a path joins."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from conary.ccs.errors import CcsInputError

BUILTIN_COMPONENTS = ("runtime", "lib", "config", "devel", "doc", "debuginfo")
DEFAULT_ON = frozenset({"runtime", "lib", "config"})
EXCLUDE = "exclude"
COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_+-]{0,63}$")

_LIB_DIR = re.compile(r"^(usr/(local/)?)?lib(32|64|x32)?(/[a-z0-9_]+-linux-[a-z0-9_]+)?$")
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9][0-9A-Za-z_.+-]*)?$")
_DOC = re.compile(r"(^|/)share/(doc|man|info)(/|$)")
_HEADER_DIR = re.compile(r"^(usr/(local/)?)?include(/|$)")
_HEADER_SUFFIXES = (".h", ".hh", ".hpp", ".hxx", ".h++", ".inc")
_DEVEL_DIRS = re.compile(
    r"^(usr/(local/)?)?(lib(32|64|x32)?(/[a-z0-9_]+-linux-[a-z0-9_]+)?|share)/(pkgconfig|cmake)(/|$)"
)
_ACLOCAL = re.compile(r"^(usr/(local/)?)?share/aclocal(-[0-9.]+)?(/|$)")


def is_default_component(name: str) -> bool:
    return name in DEFAULT_ON


def in_lib_dir(path: str) -> bool:
    parent, _, _ = path.rpartition("/")
    return bool(_LIB_DIR.match(parent))


def classify_component(path: str, *, is_symlink: bool = False) -> str:
    """Apply the built-in rules to a relative path; the first match wins."""
    path = path.lstrip("/")
    parent, _, name = path.rpartition("/")
    if not parent or name in _DIRECTORY_NAMES or name.startswith("aclocal"):
        # the path may itself be a directory a rule names: apply the rules to it whole
        return classify_whole_path(path, is_symlink=is_symlink)
    # Otherwise what the rules ask of directories depends on the parent alone, which thousands
    # of files share: that part is cached.
    config, debug, devel, doc, lib_dir = _parent_facts(parent)
    if config:
        return "config"
    if debug or name.endswith(".debug"):
        return "debuginfo"
    if devel or name.endswith(_DEVEL_SUFFIXES):
        return "devel"
    if doc:
        return "doc"
    if lib_dir and _SHARED_OBJECT.search(name):
        return "devel" if is_symlink and name.endswith(".so") else "lib"
    return "runtime"


# names of directories the rules test for: a path ending in one may be that directory itself
_DIRECTORY_NAMES = frozenset({"etc", "debug", "include", "doc", "man", "info", "pkgconfig", "cmake"})
_DEVEL_SUFFIXES = (*_HEADER_SUFFIXES, ".a", ".la", ".pc", ".cmake")


@lru_cache(maxsize=8192)
def _parent_facts(parent: str) -> tuple[bool, bool, bool, bool, bool]:
    """(config, debuginfo, devel, doc, lib dir) as the rules decide them for any path in *parent*."""
    child = parent + "/"
    return (
        child.startswith("etc/"),
        child.startswith("usr/lib/debug/"),
        bool(_HEADER_DIR.match(child) or _DEVEL_DIRS.match(child) or _ACLOCAL.match(child)),
        bool(_DOC.search(child)),
        bool(_LIB_DIR.match(parent)),
    )


def classify_whole_path(path: str, *, is_symlink: bool = False) -> str:
    """The built-in rules as written, on the whole path (classify_component caches part of this)."""
    path = path.lstrip("/")
    name = path.rpartition("/")[2]
    if path == "etc" or path.startswith("etc/"):
        return "config"
    if path == "usr/lib/debug" or path.startswith("usr/lib/debug/") or name.endswith(".debug"):
        return "debuginfo"
    if (
        _HEADER_DIR.match(path)
        or name.endswith(_HEADER_SUFFIXES)
        or name.endswith((".a", ".la"))
        or name.endswith(".pc")
        or name.endswith(".cmake")
        or _DEVEL_DIRS.match(path)
        or _ACLOCAL.match(path)
    ):
        return "devel"
    if _DOC.search(path):
        return "doc"
    if _SHARED_OBJECT.search(name) and in_lib_dir(path):
        # libz.so -> libz.so.1 exists only for the linker: it belongs with the headers.
        if is_symlink and name.endswith(".so"):
            return "devel"
        return "lib"
    return "runtime"


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a component glob: ** spans directories, * and ? stay within one, [..] classes."""
    pattern = pattern.strip().lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(/.*)?")  # "dir/**" also names dir itself
            i += 3
        elif pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(ch))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_matches(pattern: str, path: str) -> bool:
    return bool(_glob_regex(pattern).match(path.lstrip("/")))


@dataclass(frozen=True)
class ComponentRules:
    """Built-in rules plus a recipe's [components] overrides (checked first, in the order given)."""

    overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, rules: Mapping[str, Iterable[str] | str] | None) -> ComponentRules:
        if not rules:
            return cls()
        overrides: list[tuple[str, tuple[str, ...]]] = []
        exclude: tuple[str, ...] = ()
        for name, globs in rules.items():
            if isinstance(globs, str):
                globs = [globs]
            globs = tuple(globs)
            for glob in globs:
                if not isinstance(glob, str) or not glob.strip():
                    raise CcsInputError(
                        f"component rule {name!r} holds {glob!r}; expected non-empty glob strings",
                        where=f"components.{name}",
                    )
            if name == EXCLUDE:
                exclude = globs
            elif not COMPONENT_NAME.match(name):
                raise CcsInputError(
                    f"invalid component name {name!r}",
                    where=f"components.{name}",
                    hint="use lowercase letters, digits, '_', '+' or '-'",
                )
            else:
                overrides.append((name, globs))
        return cls(tuple(overrides), exclude)

    def excluded(self, path: str) -> bool:
        return any(glob_matches(g, path) for g in self.exclude)

    def component_of(self, path: str, *, is_symlink: bool = False) -> str:
        for name, globs in self.overrides:
            if any(glob_matches(g, path) for g in globs):
                return name
        return classify_component(path, is_symlink=is_symlink)


def is_config_path(path: str) -> bool:
    """Regular files under etc/ are configuration: installers keep local edits to them."""
    return path.startswith("etc/")


def component_order(names: Iterable[str]) -> list[str]:
    return sorted(set(names))
