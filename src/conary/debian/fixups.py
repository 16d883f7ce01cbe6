"""The seed fixups: links and files that Debian's maintainer scripts would make, as one CCS package.

The data lives in ``stages/seed/fixups.toml``: ``[package]`` (name, version, summary), then
``[[symlink]]`` entries {path, target, made_by} and ``[[file]]`` entries {path, mode, content,
made_by}. ``made_by`` names the maintainer script an entry stands for; it is required, so that every
entry says why it exists.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conary.ccs import PackageMeta, build_package
from conary.ccs.keys import SigningKey
from conary.errors import InputError


@dataclass(frozen=True)
class FixupLink:
    path: str
    target: str
    made_by: str


@dataclass(frozen=True)
class FixupFile:
    path: str
    mode: int
    content: str
    made_by: str


@dataclass(frozen=True)
class Fixups:
    name: str
    version: str
    summary: str
    links: tuple[FixupLink, ...]
    files: tuple[FixupFile, ...]


def _text(row: dict[str, object], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"{key} must be a non-empty string", where=where)
    return value


def _relative(path: str, where: str) -> str:
    parts = PurePosixPath(path).parts
    if path.startswith("/") or not parts or ".." in parts:
        raise InputError(f"path {path!r} must be relative to the root, without '..'", where=where)
    return path


def load_fixups(path: str | os.PathLike[str]) -> Fixups:
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("seed fixups file not found", where=where) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"unreadable seed fixups: {exc}", where=where) from None
    unknown = set(data) - {"package", "symlink", "file"}
    if unknown:
        raise InputError(
            f"unknown table {sorted(unknown)[0]!r}", where=where, hint="use package, symlink, file"
        )
    package = data.get("package", {})
    links = []
    for index, row in enumerate(data.get("symlink", [])):
        at = f"{where}: symlink[{index}]"
        links.append(
            FixupLink(
                _relative(_text(row, "path", at), at), _text(row, "target", at), _text(row, "made_by", at)
            )
        )
    files = []
    for index, row in enumerate(data.get("file", [])):
        at = f"{where}: file[{index}]"
        mode = row.get("mode", 0o644)
        if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise InputError("mode must be an integer such as 0o644", where=at)
        content = row.get("content")
        if not isinstance(content, str):
            raise InputError("content must be a string", where=at)
        files.append(
            FixupFile(_relative(_text(row, "path", at), at), mode, content, _text(row, "made_by", at))
        )
    paths = [e.path for e in links] + [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise InputError("a path appears twice", where=where)
    return Fixups(
        _text(package, "name", f"{where}: package"),
        _text(package, "version", f"{where}: package"),
        str(package.get("summary", "")),
        tuple(links),
        tuple(files),
    )


def build_fixups_package(
    fixups: Fixups, output_dir: str | os.PathLike[str], signing_key: SigningKey | str | os.PathLike[str]
) -> Path:
    """The fixups as ``<name>-<version>-1.noarch.ccs`` (same bytes every time)."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fixups-", dir=output) as scratch:
        tree = Path(scratch)
        os.chmod(tree, 0o755)
        for link in fixups.links:
            target = tree / link.path
            _make_parents(tree, target)
            os.symlink(link.target, target)
        for item in fixups.files:
            target = tree / item.path
            _make_parents(tree, target)
            target.write_text(item.content, encoding="utf-8")
            os.chmod(target, item.mode)
        made_by = {e.path: e.made_by for e in (*fixups.links, *fixups.files)}
        return build_package(
            tree,
            PackageMeta(name=fixups.name, version=fixups.version, arch="noarch", summary=fixups.summary),
            output_dir=output,
            signing_key=signing_key,
            provenance={"builder": "conary seed fixups", "made_by": made_by},
            split_debug=False,
            workers=1,
        )


def _make_parents(tree: Path, target: Path) -> None:
    parent = target.parent
    missing = []
    while parent != tree and not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir()
        os.chmod(directory, 0o755)
