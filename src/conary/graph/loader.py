"""Loading a set of recipes for the graph, with a cache of what each recipe file contributes.

A recipe file is read, validated and expanded only when it changed: the store keeps, per file, its
stat signature (size, mtime, ctime, inode) and what the graph needs of it (name, version, release,
requirements and its lines of the derivation key) for one target machine. A no-op run over
thousands of recipes then stats the files instead of parsing them. The local files a recipe's key
reads (a local source tree, a patch without a checksum) are part of its signature.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary import __version__
from conary.graph.errors import GraphError
from conary.graph.keys import KEY_FORMAT, KeyContext, local_inputs, machine_lines, recipe_key_lines
from conary.graph.store import CheckpointStore
from conary.recipe import RecipeError
from conary.recipe.loader import check_path

# Bumped when what a cache entry holds, or how it is computed, changes.
CACHE_FORMAT = "recipe-info 2"


@dataclass(frozen=True)
class RecipeInfo:
    path: Path
    name: str
    version: str
    release: str
    requires: tuple[str, ...]
    makedepends: tuple[str, ...]
    lines: tuple[str, ...]  # the recipe's own lines of its derivation key


def cache_context(context: KeyContext) -> str:
    """What a cached entry was computed for: this Conary, the key format, the target machine."""
    text = "\n".join([CACHE_FORMAT, __version__, KEY_FORMAT, *machine_lines(context)])
    return hashlib.sha256(text.encode()).hexdigest()


def signature(path: str | os.PathLike[str]) -> str:
    """What says a file is unchanged without reading it: size, mtime, ctime and inode."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def full_signature(path: str, inputs: Iterable[str]) -> str:
    """A recipe file's signature and those of the local files its key reads (lstat: a link is
    itself an input; a missing file says so)."""
    parts = [signature(path)]
    for item in inputs:
        try:
            st = os.lstat(item)
            parts.append(f"{item}={st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
        except FileNotFoundError:
            parts.append(f"{item}=missing")
    return "|".join(parts)


def current_signatures(
    paths: Iterable[str | Path], context: KeyContext, store: CheckpointStore
) -> list[tuple[str, str]]:
    """(path, signature) of every recipe file under PATHS as things stand, with the local inputs
    the store's cache lists for it (a file the cache does not know gets its own signature only)."""
    cached = store.recipe_cache(cache_context(context))
    out: list[tuple[str, str]] = []
    for found, _ in recipe_files(paths):
        absolute = os.path.abspath(found)
        entry = cached.get(absolute)
        inputs = json.loads(entry[1]).get("inputs", ()) if entry is not None else ()
        out.append((absolute, full_signature(found, inputs)))
    return out


def load_infos(paths: Iterable[str | Path], context: KeyContext, store: CheckpointStore) -> list[RecipeInfo]:
    """Every recipe under *paths* (files named, or recipe TOML files found in directories), in path
    order; a TOML file without a [package] table found in a directory is skipped."""
    given = list(paths)
    ctx = cache_context(context)
    cached = store.recipe_cache(ctx)
    fresh: list[tuple[str, str, str]] = []
    infos: list[RecipeInfo] = []
    seen: dict[str, Path] = {}
    for found, explicit in recipe_files(given):
        path = Path(found)
        try:
            sig = signature(path)
        except OSError as err:
            raise GraphError(
                f"cannot read recipe: {err.strerror}", where=found, hint="check the path"
            ) from None
        entry = cached.get(os.path.abspath(found))
        data: dict[str, Any] | None = None
        if entry is not None:
            candidate = json.loads(entry[1])
            if entry[0] == full_signature(found, candidate.get("inputs", ())):
                data = candidate
        if data is None:
            data = _read(path, explicit, context)
            after = full_signature(found, data.get("inputs", ()))
            # Cached only when nothing changed while it was read: the signature before (of the
            # recipe file) and after (with its inputs) describe the same files.
            if after.split("|", 1)[0] == sig:
                fresh.append((os.path.abspath(found), after, json.dumps(data)))
        if data.get("name") is None:
            continue  # not a recipe (versions.toml and the like)
        info = RecipeInfo(
            path=path,
            name=data["name"],
            version=data["version"],
            release=data["release"],
            requires=tuple(data["requires"]),
            makedepends=tuple(data["makedepends"]),
            lines=tuple(data["lines"]),
        )
        if info.name in seen:
            raise GraphError(
                f"package {info.name} is built by two recipes: {seen[info.name]} and {path}",
                where=found,
                hint="keep one recipe per package name in the set",
            )
        seen[info.name] = path
        infos.append(info)
    if fresh:
        store.put_recipe_cache(ctx, fresh)
    if not infos:
        raise GraphError(
            "no recipes found",
            where=", ".join(map(str, given)) or "(none)",
            hint="name recipe files or directories that hold recipe TOML files",
        )
    return infos


def recipe_files(paths: Iterable[str | Path]) -> Iterator[tuple[str, bool]]:
    """(path, named_explicitly): files as given; directories walked for *.toml, sorted.

    The same files as conary.recipe.recipe_files, found with scandir (no stat per entry)."""
    for given in paths:
        top = os.fspath(given)
        if not os.path.isdir(top):
            yield top, True
            continue
        found: list[str] = []
        stack = [top]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir():
                        stack.append(entry.path)
                    elif entry.name.endswith(".toml") and entry.is_file():
                        found.append(entry.path)
        for path in sorted(found):
            yield path, False


def _read(path: Path, explicit: bool, context: KeyContext) -> dict[str, object]:
    result = check_path(path)
    if result.recipe is None:
        if not result.is_recipe and not explicit:
            return {"name": None}
        raise RecipeError(result.path, result.problems)
    recipe = result.recipe
    return {
        "name": recipe.package.name,
        "version": recipe.package.version,
        "release": recipe.package.release,
        "requires": list(recipe.build.requires),
        "makedepends": list(recipe.build.makedepends),
        "lines": list(recipe_key_lines(recipe, path.resolve().parent, context)),
        "inputs": local_inputs(recipe, path.resolve().parent),
    }
