"""Dependency scan: what a package provides and requires, from ELF files, scripts and .pc files.

Names are chosen so that a resolver matches a requirement to a provide by ``(kind, name)``:

- soname       "<SONAME>(<abi>)", e.g. "libz.so.1(x86-64)"; provided by DT_SONAME, required by DT_NEEDED
- interpreter  "/<path>" of the ELF program interpreter (PT_INTERP), e.g. "/lib64/ld-linux-x86-64.so.2"
- binary       the base name of an executable (or symlink) in a bin directory, e.g. "hello"
- file         "/<path>": required by a script's #! line; provided by every entry in a bin directory
- pkgconfig    the module name of a .pc file, with its Version; required by its Requires(.private) lines
- package      the package name, provided with "<version>-<release>"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from conary.ccs.components import in_lib_dir
from conary.ccs.elfinfo import ELF_MAGIC, ElfInfo, parse_elf
from conary.ccs.model import DEPENDENCY_KINDS, Dependency, FileEntry

BIN_DIRS = frozenset({"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin", "usr/games"})
_LOADER = re.compile(
    r"^(ld-linux[-a-z0-9_.]*\.so\.[0-9]+|ld64\.so\.[0-9]+|ld-musl-[a-z0-9_]+\.so\.1|ld\.so\.1)$"
)
_PC_VAR = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")
_PC_REQ = re.compile(r"([^\s,<>=!]+)\s*(?:(<=|>=|!=|=|<|>)\s*([^\s,]+))?")


@dataclass(frozen=True)
class FileFacts:
    """What the scanner learnt from one regular file's content."""

    elf: ElfInfo | None = None
    shebang: tuple[str, ...] = ()  # interpreter and its first argument, if any
    pkgconfig: tuple[str, str, tuple[Dependency, ...]] | None = None  # (name, version, requires)


NO_FACTS = FileFacts()  # most files: one shared instance, which packing need not send between processes


def soname_dependency(soname: str, abi: str, version: str = "") -> Dependency:
    return Dependency("soname", f"{soname}({abi})", version)


def elf_abi(path: str | Path) -> str:
    """The ABI qualifier used in soname dependencies for this ELF file (e.g. "x86-64")."""
    info = parse_elf(Path(path).read_bytes())
    return info.abi if info else ""


def in_bin_dir(path: str) -> bool:
    return path.rpartition("/")[0] in BIN_DIRS


def is_pkgconfig_path(path: str) -> bool:
    return path.endswith(".pc") and "/pkgconfig/" in f"/{path}"


def parse_pkgconfig(text: str, name: str) -> tuple[str, str, tuple[Dependency, ...]]:
    """(module name, version, requirements) of a .pc file; Requires and Requires.private both count."""
    variables: dict[str, str] = {}
    fields: dict[str, str] = {}

    def expand(value: str) -> str:
        for _ in range(16):
            new = _PC_VAR.sub(lambda m: variables.get(m.group(1), ""), value)
            if new == value:
                break
            value = new
        return value

    logical: list[str] = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            logical.append(line)
    for line in logical:
        m = re.match(r"^([A-Za-z0-9_.]+)\s*([=:])\s*(.*)$", line)
        if not m:
            continue
        key, sep, value = m.groups()
        if sep == "=":
            variables[key] = expand(value.strip())
        else:
            fields[key.lower()] = expand(value.strip())
    requires: list[Dependency] = []
    for key in ("requires", "requires.private"):
        for req_name, op, ver in _PC_REQ.findall(fields.get(key, "")):
            requires.append(Dependency("pkgconfig", req_name, f"{op} {ver}" if op else ""))
    return name, fields.get("version", ""), tuple(requires)


def file_facts(path: str, data: bytes | memoryview, *, executable: bool) -> FileFacts:
    """Facts from a file's content; *data* may be a prefix for files that are neither ELF nor .pc."""
    head = bytes(data[:4])
    if head == ELF_MAGIC:
        return FileFacts(elf=parse_elf(data))
    if executable and head[:2] == b"#!":
        line = bytes(data[:256]).split(b"\n", 1)[0][2:].decode("utf-8", "replace").split()
        return FileFacts(shebang=tuple(line[:2]))
    if is_pkgconfig_path(path):
        text = bytes(data).decode("utf-8", "replace")
        return FileFacts(pkgconfig=parse_pkgconfig(text, path.rpartition("/")[2][:-3]))
    return NO_FACTS


def needs_full_content(path: str, head: bytes) -> bool:
    return head[:4] == ELF_MAGIC or is_pkgconfig_path(path)


class Entry(Protocol):
    """What the scan needs of a package entry: a FileEntry, or a tree entry while packing."""

    @property
    def path(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def mode(self) -> int: ...
    @property
    def target(self) -> str: ...


def _interpreter_paths(files: Sequence[Entry]) -> set[str]:
    """Package paths of dynamic loaders, also as seen through the package's directory symlinks."""
    loaders = {
        f.path for f in files if f.type in ("file", "symlink") and _LOADER.match(f.path.rpartition("/")[2])
    }
    loaders = {p for p in loaders if in_lib_dir(p)}
    aliases = set(loaders)
    for link in files:
        if link.type != "symlink":
            continue
        target = link.target.lstrip("/") if link.target.startswith("/") else _join(link.path, link.target)
        if target is None:
            continue
        prefix = target + "/"
        for loader in loaders:
            if loader.startswith(prefix):
                aliases.add(link.path + "/" + loader[len(prefix) :])
    return {"/" + p for p in aliases}


def _join(link_path: str, target: str) -> str | None:
    parts = link_path.split("/")[:-1]
    for part in target.split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _sort_key(d: Dependency) -> tuple[int, str, str]:
    return (DEPENDENCY_KINDS.index(d.kind), d.name, d.version)


def dependencies_from_facts(
    files: Sequence[Entry],
    facts: Mapping[str, FileFacts],
    *,
    name: str,
    version: str,
    release: str,
) -> tuple[tuple[Dependency, ...], tuple[Dependency, ...]]:
    """Provides and requires of a package, sorted and without requirements it satisfies itself."""
    provides: set[Dependency] = {Dependency("package", name, f"{version}-{release}")}
    requires: set[Dependency] = set()
    for entry in files:
        if entry.type == "dir":
            continue
        if in_bin_dir(entry.path) and (entry.type == "symlink" or entry.mode & 0o111):
            provides.add(Dependency("binary", entry.path.rpartition("/")[2]))
            provides.add(Dependency("file", "/" + entry.path))
        fact = facts.get(entry.path)
        if fact is None:
            continue
        if fact.elf is not None:
            elf = fact.elf
            if elf.soname:
                provides.add(soname_dependency(elf.soname, elf.abi))
            for needed in elf.needed:
                requires.add(soname_dependency(needed, elf.abi))
            if elf.interpreter:
                requires.add(Dependency("interpreter", elf.interpreter))
        if fact.shebang:
            interpreter = fact.shebang[0]
            if interpreter.startswith("/"):
                requires.add(Dependency("file", interpreter))
                if interpreter.rpartition("/")[2] == "env" and len(fact.shebang) > 1:
                    program = fact.shebang[1]
                    if not program.startswith("-") and "=" not in program:
                        requires.add(Dependency("binary", program))
        if fact.pkgconfig is not None:
            pc_name, pc_version, pc_requires = fact.pkgconfig
            provides.add(Dependency("pkgconfig", pc_name, pc_version))
            requires.update(pc_requires)
    provides.update(Dependency("interpreter", p) for p in _interpreter_paths(files))
    own_paths = {"/" + f.path for f in files}
    provided = {d.key for d in provides}
    kept = {
        d
        for d in requires
        if d.key not in provided and not (d.kind in ("file", "interpreter") and d.name in own_paths)
    }
    return tuple(sorted(provides, key=_sort_key)), tuple(sorted(kept, key=_sort_key))


def merge_dependencies(
    provides: Iterable[Dependency],
    requires: Iterable[Dependency],
    extra_provides: Iterable[Dependency],
    extra_requires: Iterable[Dependency],
    drop_requires: Iterable[Dependency] = (),
) -> tuple[tuple[Dependency, ...], tuple[Dependency, ...]]:
    """Scanned and stated dependencies together, sorted, without requirements the package provides
    and without the scanned requirements named in *drop_requires* (by kind and name; the name "*"
    drops every scanned requirement of that kind)."""
    all_provides = set(provides) | set(extra_provides)
    provided = {d.key for d in all_provides}
    dropped = {d.key for d in drop_requires}
    dropped_kinds = {kind for kind, name in dropped if name == "*"}
    kept = {
        d for d in requires if d.key not in provided and d.key not in dropped and d.kind not in dropped_kinds
    }
    kept |= {d for d in extra_requires if d.key not in provided}
    return tuple(sorted(all_provides, key=_sort_key)), tuple(sorted(kept, key=_sort_key))


def scan_dependencies(
    root: str | Path,
    files: Iterable[FileEntry],
    *,
    name: str,
    version: str,
    release: str = "1",
) -> tuple[tuple[Dependency, ...], tuple[Dependency, ...]]:
    """Scan the files of a tree on disk; returns (provides, requires)."""
    root = Path(root)
    files = list(files)
    facts: dict[str, FileFacts] = {}
    for entry in files:
        if entry.type != "file":
            continue
        with open(root / entry.path, "rb") as handle:
            head = handle.read(256)
            data = head + handle.read() if needs_full_content(entry.path, head) else head
        facts[entry.path] = file_facts(entry.path, data, executable=bool(entry.mode & 0o111))
    return dependencies_from_facts(files, facts, name=name, version=version, release=release)
