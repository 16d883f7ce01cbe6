"""Derivation keys and output digests.

A key is the sha256 of a versioned canonical text of explicit lines (BitBake's siggen): the
expanded recipe field by field, the source and patch checksums, the target and stage, the
toolchain identity, the build root's base, and `dep:NAME:DIGEST` for each build dependency. The
text is stored with the checkpoint, so `conary build why` is a diff of two texts.

An output digest is what dependents see of a package: its identity, its files with their metadata
and content hashes, its typed provides and requires and its scriptlets. It leaves out provenance
and the signature, so a rebuild that changed only how the package was made (its recipe's check
step, say) has the same output digest, and its dependents' keys do not change (early cutoff).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.ccs import Manifest, open_package
from conary.graph.errors import GraphError
from conary.recipe import MacroContext, Recipe, TargetMacros, localtree
from conary.recipe.macros import native_target

KEY_FORMAT = "conary-derivation-key V1"
OUTPUT_FORMAT = "conary-output-digest V1"
# %(jobs)s is expanded as this in the key: parallelism is not an input of the output.
KEY_JOBS = 1
# Fields of a Recipe that describe where it was read from rather than what it builds.
_NOT_CONTENT = frozenset({"path", "text_sha256", "raw_text", "expanded"})


@dataclass(frozen=True)
class KeyContext:
    """What a key depends on beyond the recipe and its dependencies (the same for a whole stage)."""

    stage: str = "final"  # the graph's stage name (stage1, base, ...)
    target: TargetMacros | None = None  # the machine built for; None: this machine
    toolchain: str = ""  # the toolchain identity the caller vouches for (e.g. "seed bookworm amd64")
    base: tuple[str, ...] = ()  # lines describing the base layers: "seed:host", "base:NAME:DIGEST"

    @property
    def machine(self) -> TargetMacros:
        return self.target or native_target()


@dataclass(frozen=True)
class Key:
    digest: str  # sha256 hex of text
    text: str


def expanded_recipe(recipe: Recipe, context: KeyContext) -> Recipe:
    """The recipe expanded as the cook expands it, except %(jobs)s (see KEY_JOBS)."""
    cross = recipe.cross
    macro = MacroContext(
        jobs=KEY_JOBS,
        target=cross.target if cross is not None else None,
        sysroot=(cross.sysroot if cross is not None and cross.sysroot else "/"),
        stage=recipe.build.stage or (cross.stage if cross is not None else None) or "final",
        machine=context.machine,
    )
    return recipe.expand(macro)


def recipe_lines(recipe: Recipe) -> Iterator[str]:
    """`recipe:FIELD.PATH=VALUE` for every field of the expanded recipe, values as JSON."""
    data = recipe.to_dict()
    for name in sorted(data):
        if name not in _NOT_CONTENT:
            yield from _flatten(f"recipe:{name}", data[name])


def _flatten(prefix: str, value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _flatten(f"{prefix}.{key}", value[key])
    elif isinstance(value, list | tuple) and value and any(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            yield from _flatten(f"{prefix}[{i}]", item)
    elif value is not None and value != [] and value != ():
        yield f"{prefix}={json.dumps(value, sort_keys=True, ensure_ascii=False)}"


def source_lines(recipe: Recipe, recipe_dir: Path) -> Iterator[str]:
    """Checksums of what the cook reads besides the recipe: archives, local trees, patches."""
    src = recipe.source
    if src.archive is not None:
        yield f"source:archive:{src.checksum}"
    if src.path is not None:
        yield f"source:path:{tree_digest(recipe_dir / src.path)}"
    for i, extra in enumerate(src.additional):
        yield f"source:additional[{i}]:{extra.checksum}"
    for i, patch in enumerate(recipe.patches):
        if patch.checksum is not None:
            yield f"patch:{i}:{patch.checksum}"
        else:
            local = recipe_dir / patch.file
            try:
                digest = hashlib.sha256(local.read_bytes()).hexdigest()
            except OSError as err:
                raise GraphError(
                    f"cannot read patch: {err.strerror}", where=str(local), hint="fix the patch path"
                ) from None
            yield f"patch:{i}:sha256:{digest}"


def tree_digest(root: Path) -> str:
    """sha256 over a local source tree: sorted relative paths, modes, contents and link targets."""
    h = hashlib.sha256()
    for dirpath, _dirnames, filenames in localtree.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                h.update(f"L {rel} {os.readlink(path)}\n".encode())
            else:
                h.update(f"F {rel} {path.stat().st_mode & 0o111:o}\n".encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def recipe_key_lines(recipe: Recipe, recipe_dir: Path, context: KeyContext) -> tuple[str, ...]:
    """The lines of a key that come from the recipe itself: its expanded fields and its inputs."""
    return (*recipe_lines(expanded_recipe(recipe, context)), *source_lines(recipe, recipe_dir))


def local_inputs(recipe: Recipe, recipe_dir: Path) -> list[str]:
    """The files beside the recipe that its key reads and its text does not pin by checksum: a
    local source tree (its directories too, whose mtimes change when entries come and go) and
    patches without a checksum. Absolute paths, sorted."""
    found: list[str] = []
    if recipe.source.path is not None:
        top = os.path.abspath(recipe_dir / recipe.source.path)
        found.append(top)
        for dirpath, dirnames, filenames in localtree.walk(top):
            found.extend(os.path.join(dirpath, name) for name in (*dirnames, *filenames))
    found.extend(os.path.abspath(recipe_dir / p.file) for p in recipe.patches if p.checksum is None)
    return sorted(found)


@functools.cache
def machine_lines(context: KeyContext) -> tuple[str, ...]:
    machine = dataclasses.asdict(context.machine)
    return tuple(f"target:{k}={json.dumps(machine[k])}" for k in sorted(machine))


def derivation_key(recipe_lines: Sequence[str], context: KeyContext, dep_digests: Mapping[str, str]) -> Key:
    """The key of one package: its canonical text and that text's sha256."""
    lines = [KEY_FORMAT, *recipe_lines, *machine_lines(context)]
    lines.append(f"stage:{context.stage}")
    lines.append(f"toolchain:{context.toolchain}")
    lines.extend(sorted(context.base))
    lines.extend(f"dep:{name}:{digest}" for name, digest in sorted(dep_digests.items()))
    text = "\n".join(lines) + "\n"
    return Key(hashlib.sha256(text.encode()).hexdigest(), text)


def output_lines(manifest: Manifest) -> Iterator[str]:
    yield OUTPUT_FORMAT
    yield f"package:{manifest.name} {manifest.version} {manifest.release} {manifest.arch}"
    for f in sorted(manifest.files, key=lambda e: e.path):
        yield (
            f"file:{json.dumps(f.path)} {f.type} {f.mode:o} {f.uid}:{f.gid} {f.size} {f.sha256} "
            f"{json.dumps(f.target)} {f.component} {int(f.config)}"
        )
    for c in sorted(manifest.components, key=lambda c: c.name):
        yield f"component:{c.name} {int(c.default)}"
    for d in sorted(manifest.provides, key=lambda d: (d.kind, d.name, d.version)):
        yield f"provides:{d}"
    for d in sorted(manifest.requires, key=lambda d: (d.kind, d.name, d.version)):
        yield f"requires:{d}"
    for name in sorted(manifest.scriptlets):
        yield f"scriptlet:{name}:{hashlib.sha256(manifest.scriptlets[name].encode()).hexdigest()}"


def output_digest_of_manifest(manifest: Manifest) -> str:
    text = "\n".join(output_lines(manifest)) + "\n"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path: Path) -> Manifest:
    with open_package(path) as package:
        return package.manifest


def output_digest(path: Path) -> str:
    """The output digest of the .ccs at *path* (verified first, as every package we read)."""
    return output_digest_of_manifest(read_manifest(path))


def diff_lines(old: str, new: str) -> list[str]:
    """The key lines that differ: `- old line` and `+ new line`, in key order."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    old_set, new_set = set(old_lines), set(new_lines)
    out = [f"- {line}" for line in old_lines if line not in new_set]
    out.extend(f"+ {line}" for line in new_lines if line not in old_set)
    return out
