"""Profiles: stages/<name>.toml read into frozen data and validated (docs/profiles.md).

A profile lists the stages of a bootstrap in order, the recipes of each, and what each stage's
build roots stand on. Loading checks everything that can be checked without building: unknown keys
(with a "did you mean"), types, stage names and order, references to earlier stages, recipe paths,
and targets. Each problem is one error naming the profile file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.distro_tree import tree_dir
from conary.errors import InputError
from conary.recipe import recipe_files
from conary.recipe.loader import check_path
from conary.targets import known_targets

# Stages run in file order; these are the names a profile may use, in the order they must appear.
STAGE_NAMES = ("stage0", "stage1", "stage2", "base", "conary", "image")
SEED = "seed"

_PROFILE_KEYS = ("name", "summary", "targets")
_SEED_KEYS = ("suite", "packages", "recipes")
_STAGE_KEYS = (
    "name",
    "summary",
    "recipes",
    "optional",
    "required_for",
    "rebuild",
    "root",
    "break_edges",
    "image",
    "image_packages",
    "debian",
)
_DEBIAN_KEYS = ("lock", "packages", "omit")
_TOP_KEYS = ("profile", "seed", "stages")


@dataclass(frozen=True)
class SeedSpec:
    """Stage0 of a native build: the closure of these Debian packages, pinned per architecture in
    stages/seed/<arch>.lock; `recipes` are built on top of them for every build root (for example
    the links Debian's maintainer scripts would have made)."""

    suite: str
    packages: tuple[str, ...]
    recipes: tuple[Path, ...]


@dataclass(frozen=True)
class DebianSpec:
    """Debian binary packages a stage imports into its repo beside what its recipes build: the
    closure of `packages` within the lock stages/seed/<lock>-<arch>.lock, without `omit` (names
    whose job another package of the system does, and whose requirements are left out)."""

    lock: str
    packages: tuple[str, ...]
    omit: tuple[str, ...]

    def lock_name(self, arch: str) -> str:
        return f"{self.lock}-{arch}"


@dataclass(frozen=True)
class StageSpec:
    name: str
    summary: str
    recipes: tuple[Path, ...]  # recipe files, directories expanded, in the profile's order
    optional: bool
    required_for: tuple[str, ...]
    rebuild: str | None  # the earlier stage whose recipes this one builds again
    root: tuple[str, ...]  # "seed" and/or earlier stage names: the base of every build root
    break_edges: tuple[tuple[str, str], ...]
    image: Path | None
    # What images of this bootstrap install from this stage when it ran (the Conary stage's
    # `conary`), beside the packages the image definition names.
    image_packages: tuple[str, ...] = ()
    debian: DebianSpec | None = None

    def is_optional_for(self, arch: str) -> bool:
        return self.optional and arch not in self.required_for


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    targets: tuple[str, ...]
    seed: SeedSpec
    stages: tuple[StageSpec, ...]
    path: Path
    tree: Path  # the distro tree the profile's paths are relative to

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise InputError(
            f"profile {self.name} has no stage '{name}'",
            where=str(self.path),
            hint=f"its stages: {', '.join(s.name for s in self.stages)}",
        )

    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def recipes_of(self, stage: StageSpec) -> tuple[Path, ...]:
        """The recipes a stage builds: its own, or those of the stage it rebuilds."""
        return self.stage(stage.rebuild).recipes if stage.rebuild else stage.recipes


def profiles_dir() -> Path:
    return tree_dir("stages")


def known_profiles(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or profiles_dir()).glob("*.toml"))


def load_profile(
    name: str, *, directory: Path | None = None, targets_directory: Path | None = None
) -> Profile:
    """The profile *name* (a name in stages/, or a path to a profile file)."""
    candidate = Path(name)
    if candidate.suffix == ".toml" and candidate.is_file():
        path = candidate
    else:
        directory = directory or profiles_dir()
        path = directory / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(known_profiles(directory)) or "none"
            raise InputError(
                f"unknown profile '{name}'", where=str(directory), hint=f"known profiles: {known}"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML: {err}", where=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", where=str(path)) from None
    # Paths in a profile are relative to the distro tree: the directory above stages/.
    tree = path.resolve().parent.parent
    return _Reader(path, tree, targets_directory).profile(data)


class _Reader:
    def __init__(self, path: Path, tree: Path, targets_directory: Path | None) -> None:
        self.path = path
        self.tree = tree
        self.targets = known_targets(targets_directory) if targets_directory else known_targets()

    def fail(self, key: str, what: str, hint: str | None = None) -> InputError:
        return InputError(f"{key}: {what}", where=str(self.path), hint=hint)

    # ------------------------------------------------------------------ typed access

    def keys(self, table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
                raise self.fail(f"{where}{key}" if where else key, "unknown key", hint)

    def table(self, data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"expected a table, got {_type(value)}")
        return value

    def string(self, data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(f"{where}{key}", "missing required key")
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}{key}", f"expected a non-empty string, got {_type(value)}")
        return value

    def strings(self, data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(f"{where}{key}", "expected a list of non-empty strings")
        return tuple(value)

    def boolean(self, data: Mapping[str, Any], key: str, where: str) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(f"{where}{key}", f"expected true or false, got {_type(value)}")
        return value

    def recipe_paths(self, entries: Sequence[str], where: str) -> tuple[Path, ...]:
        """Recipe files named, or every recipe in the directories named, relative to the tree."""
        out: list[Path] = []
        for i, entry in enumerate(entries):
            path = self.tree / entry
            if path.is_dir():
                found = [Path(p) for p, _ in recipe_files([path]) if check_path(p).is_recipe]
                if not found:
                    raise self.fail(f"{where}[{i}]", f"directory '{entry}' holds no recipe")
                out.extend(found)
            elif path.is_file():
                out.append(path)
            else:
                raise self.fail(f"{where}[{i}]", f"recipe '{entry}' not found in {self.tree}")
        return tuple(out)

    def check_targets(self, names: Sequence[str], key: str) -> None:
        for name in names:
            if name not in self.targets:
                raise self.fail(key, f"unknown target '{name}'", f"known targets: {', '.join(self.targets)}")

    # ------------------------------------------------------------------ sections

    def profile(self, data: Mapping[str, Any]) -> Profile:
        self.keys(data, _TOP_KEYS, "")
        head = self.table(data, "profile", "")
        self.keys(head, _PROFILE_KEYS, "profile.")
        name = self.string(head, "name", "profile.", required=True)
        targets = self.strings(head, "targets", "profile.") or tuple(self.targets)
        self.check_targets(targets, "profile.targets")
        seed = self.seed(self.table(data, "seed", ""))
        raw_stages = data.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise self.fail("stages", "expected at least one [[stages]] table")
        stages: list[StageSpec] = []
        for i, raw in enumerate(raw_stages):
            if not isinstance(raw, dict):
                raise self.fail(f"stages[{i}]", f"expected a table, got {_type(raw)}")
            stages.append(self.stage(raw, i, stages))
        return Profile(
            name=name,
            summary=self.string(head, "summary", "profile."),
            targets=targets,
            seed=seed,
            stages=tuple(stages),
            path=self.path,
            tree=self.tree,
        )

    def seed(self, table: Mapping[str, Any]) -> SeedSpec:
        self.keys(table, _SEED_KEYS, "seed.")
        return SeedSpec(
            suite=self.string(table, "suite", "seed.") or "bookworm",
            packages=self.strings(table, "packages", "seed."),
            recipes=self.recipe_paths(self.strings(table, "recipes", "seed."), "seed.recipes"),
        )

    def stage(self, raw: Mapping[str, Any], i: int, earlier: Sequence[StageSpec]) -> StageSpec:
        where = f"stages[{i}]."
        self.keys(raw, _STAGE_KEYS, where)
        name = self.string(raw, "name", where, required=True)
        if name not in STAGE_NAMES:
            close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"stage names: {', '.join(STAGE_NAMES)}"
            raise self.fail(f"{where}name", f"unknown stage '{name}'", hint)
        seen = [s.name for s in earlier]
        if name in seen:
            raise self.fail(f"{where}name", f"stage '{name}' is listed twice")
        if seen and STAGE_NAMES.index(name) < STAGE_NAMES.index(seen[-1]):
            raise self.fail(
                f"{where}name",
                f"stage '{name}' comes after '{seen[-1]}'",
                f"stages run in this order: {', '.join(STAGE_NAMES)}",
            )
        rebuild = self.string(raw, "rebuild", where) or None
        if rebuild is not None and rebuild not in seen:
            raise self.fail(f"{where}rebuild", f"'{rebuild}' is not an earlier stage of this profile")
        root = self.strings(raw, "root", where)
        for ref in root:
            if ref != SEED and ref not in seen:
                raise self.fail(
                    f"{where}root",
                    f"'{ref}' is neither 'seed' nor an earlier stage",
                    f"earlier stages: {', '.join(seen) or 'none'}",
                )
        recipes = self.recipe_paths(self.strings(raw, "recipes", where), f"{where}recipes")
        if rebuild and recipes:
            raise self.fail(f"{where}recipes", "a stage that rebuilds another takes that stage's recipes")
        required_for = self.strings(raw, "required_for", where)
        self.check_targets(required_for, f"{where}required_for")
        image = self.string(raw, "image", where) or None
        if image is not None and not (self.tree / image).is_file():
            raise self.fail(f"{where}image", f"image definition '{image}' not found in {self.tree}")
        return StageSpec(
            name=name,
            summary=self.string(raw, "summary", where),
            recipes=recipes,
            optional=self.boolean(raw, "optional", where),
            required_for=required_for,
            rebuild=rebuild,
            root=root,
            break_edges=self.edges(raw.get("break_edges", []), f"{where}break_edges"),
            image=self.tree / image if image else None,
            image_packages=self.strings(raw, "image_packages", where),
            debian=self.debian(raw.get("debian"), f"{where}debian"),
        )

    def debian(self, value: Any, where: str) -> DebianSpec | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(where, 'expected a table: { lock = "NAME", packages = [...], omit = [...] }')
        self.keys(value, _DEBIAN_KEYS, f"{where}.")
        spec = DebianSpec(
            lock=self.string(value, "lock", f"{where}.", required=True),
            packages=self.strings(value, "packages", f"{where}."),
            omit=self.strings(value, "omit", f"{where}."),
        )
        if not spec.packages:
            raise self.fail(f"{where}.packages", "name at least one Debian package")
        return spec

    def edges(self, value: Any, key: str) -> tuple[tuple[str, str], ...]:
        ok = isinstance(value, list) and all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) and x for x in e) for e in value
        )
        if not ok:
            raise self.fail(
                key, 'expected a list of [dependent, dependency] pairs, e.g. [["gcc-pass1", "glibc"]]'
            )
        return tuple((a, b) for a, b in value)


def _type(value: object) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
