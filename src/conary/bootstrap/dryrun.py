"""`conary bootstrap dry-run`: resolve a profile for a target, validate every recipe, and say, per
stage and package, what a run would do and whether every source is at hand.

Nothing is built and nothing is downloaded: sources are looked up in the source cache and in the
mirrors (a directory mirror by its files, an http mirror by a HEAD request). A source found in
neither is missing, even when its URL or Debian's archive could supply it, because a run may be
offline; the plan says where it could come from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from conary.bootstrap.profile import Profile, StageSpec
from conary.bootstrap.seed import SeedPlan, seed_plan
from conary.cook import source_items
from conary.errors import ConaryError
from conary.fetch import (
    Checksum,
    DirectoryMirror,
    HttpMirror,
    Mirror,
    SourceCache,
    configured_mirrors,
    default_cache_dir,
    digest_file,
    filename_from_url,
    local_path,
)
from conary.recipe import check_file
from conary.targets import Target

PRESENT_CACHE = "cache"
PRESENT_MIRROR = "mirror"
PRESENT_LOCAL = "local"  # a file beside the recipe (or a file: URL), with the recipe's checksum
MISSING = "missing"

BUILD = "build"
SKIP = "skip"


@dataclass(frozen=True)
class SourcePlan:
    key: str  # recipe key path: source.archive, source.additional[0], patches.files[1]
    url: str
    checksum: str
    state: str  # cache, mirror, local or missing
    # The cache file, mirror location or local file; for a missing source, where it could come from.
    location: str


@dataclass(frozen=True)
class PackagePlan:
    stage: str
    name: str
    version: str
    release: str
    recipe: Path
    action: str  # build, skip, or an action the graph reports (cached, ...)
    reason: str
    sources: tuple[SourcePlan, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "name": self.name,
            "version": self.version,
            "release": self.release,
            "recipe": str(self.recipe),
            "action": self.action,
            "reason": self.reason,
            "sources": [vars(s) for s in self.sources],
        }


@dataclass(frozen=True)
class StagePlan:
    name: str
    summary: str
    skipped: bool
    reason: str
    packages: tuple[PackagePlan, ...]


@dataclass(frozen=True)
class Problem:
    where: str  # a recipe file, or the profile
    what: str


@dataclass(frozen=True)
class DryRunReport:
    profile: Profile
    target: Target
    seed: SeedPlan
    stages: tuple[StagePlan, ...]
    problems: tuple[Problem, ...]  # validation errors: any of them fails the dry run
    warnings: int = 0

    def sources(self) -> list[SourcePlan]:
        seen: dict[str, SourcePlan] = {}
        for stage in self.stages:
            for package in stage.packages:
                for source in package.sources:
                    seen.setdefault(source.checksum, source)
        return list(seen.values())

    def missing(self) -> list[SourcePlan]:
        return [s for s in self.sources() if s.state == MISSING]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing() and self.seed.ok

    def to_json(self) -> dict[str, object]:
        return {
            "profile": self.profile.name,
            "target": self.target.arch,
            "ok": self.ok,
            "seed": self.seed.to_json(),
            "stages": [
                {
                    "name": s.name,
                    "summary": s.summary,
                    "skipped": s.skipped,
                    "reason": s.reason,
                    "packages": [p.to_json() for p in s.packages],
                }
                for s in self.stages
            ],
            "problems": [vars(p) for p in self.problems],
            "warnings": self.warnings,
            "missing": len(self.missing()),
        }


@dataclass(frozen=True)
class DryRunOptions:
    source_cache: Path | None = None
    mirrors: tuple[str, ...] = ()
    mirror_config: Path | None = None
    skip_stage2: bool = False
    skip_conary: bool = False
    seed: str = "lock"
    # The graph's answer for a stage's packages (name → (action, reason)), when a work dir has a
    # checkpoint store; None: every package would be built.
    actions: Callable[[StageSpec], dict[str, tuple[str, str]]] | None = field(default=None, compare=False)


def skip_reason(stage: StageSpec, target: Target, *, skip_stage2: bool, skip_conary: bool) -> str:
    """Why a run leaves *stage* out for *target*, or "" when it runs it."""
    if not stage.is_optional_for(target.arch):
        return ""
    if stage.name == "stage2" and skip_stage2:
        return "--skip-stage2"
    if stage.name == "conary" and skip_conary:
        return "--skip-conary"
    return ""


def dry_run(profile: Profile, target: Target, options: DryRunOptions | None = None) -> DryRunReport:
    options = options or DryRunOptions()
    problems: list[Problem] = []
    warnings = 0
    if target.arch not in profile.targets:
        problems.append(
            Problem(
                str(profile.path),
                f"profile {profile.name} does not support target {target.arch} "
                f"(its targets: {', '.join(profile.targets)})",
            )
        )
    lookup = _SourceLookup(options)
    stages: list[StagePlan] = []
    for stage in profile.stages:
        reason = skip_reason(stage, target, skip_stage2=options.skip_stage2, skip_conary=options.skip_conary)
        graph_actions = options.actions(stage) if options.actions and not reason else {}
        if stage.debian is not None and not reason:
            lock = profile.tree / "stages" / "seed" / f"{stage.debian.lock_name(target.arch)}.lock"
            if not lock.is_file():
                problems.append(
                    Problem(
                        str(lock),
                        f"stage {stage.name} needs the lock {lock.name}, which does not exist: skip the "
                        f"stage (--skip-{stage.name}) or write the lock ('conary seed lock')",
                    )
                )
        packages: list[PackagePlan] = []
        for path in profile.recipes_of(stage):
            recipe, found = check_file(path)
            warnings += sum(1 for p in found if p.severity != "error")
            for p in found:
                if p.severity == "error":
                    problems.append(Problem(str(path), f"{p.location}: {p.message}"))
            if recipe is None:
                continue
            try:
                items = source_items(recipe, target.macros())
            except ConaryError as err:
                problems.append(Problem(str(path), err.what))
                continue
            recipe_dir = path if path.is_dir() else path.parent
            sources = tuple(
                lookup.find(key, url, checksum, debian, recipe_dir) for key, url, checksum, debian in items
            )
            name = recipe.package.name
            if reason:
                action, why = SKIP, reason
            elif name in graph_actions:
                action, why = graph_actions[name]
            else:
                action, why = BUILD, "no checkpoint yet"
            packages.append(
                PackagePlan(
                    stage.name,
                    name,
                    recipe.package.version,
                    recipe.package.release or "1",
                    path,
                    action,
                    why,
                    sources,
                )
            )
        stages.append(StagePlan(stage.name, stage.summary, bool(reason), reason, tuple(packages)))
    seed = seed_plan(profile, target, mode=options.seed, cache=lookup.cache)
    return DryRunReport(profile, target, seed, tuple(stages), tuple(problems), warnings)


class _SourceLookup:
    """Where each checksum's bytes are: the cache, a mirror, or nowhere at hand."""

    def __init__(self, options: DryRunOptions) -> None:
        self.cache = SourceCache(options.source_cache or default_cache_dir())
        self.mirrors: Sequence[Mirror] = configured_mirrors(options.mirrors, options.mirror_config)
        self.session: requests.Session | None = None
        self.seen: dict[str, tuple[str, str]] = {}

    def find(self, key: str, url: str, checksum: str, debian: str | None, recipe_dir: Path) -> SourcePlan:
        local = local_path(url, recipe_dir)
        if local is not None:
            # Not memoised by checksum: the same bytes may sit beside one recipe and not another.
            state, location = self._local(local, Checksum.parse(checksum))
            return SourcePlan(key, url, checksum, state, location)
        if checksum not in self.seen:
            self.seen[checksum] = self._locate(url, checksum, debian)
        state, location = self.seen[checksum]
        return SourcePlan(key, url, checksum, state, location)

    def _local(self, path: Path, checksum: Checksum) -> tuple[str, str]:
        """A local source is at hand when the file has the recipe's checksum (or the cache has
        those bytes from an earlier cook)."""
        if path.is_file():
            actual = digest_file(path, checksum.algo)
            if actual == checksum:
                return PRESENT_LOCAL, str(path)
            if self.cache.path_for(checksum) is None:
                return MISSING, f"{path} has {actual}, not the recipe's checksum: fix one of them"
        hit = self.cache.path_for(checksum)
        if hit is not None:
            return PRESENT_CACHE, str(hit)
        return MISSING, f"no file {path}"

    def _locate(self, url: str, checksum: str, debian: str | None) -> tuple[str, str]:
        cs = Checksum.parse(checksum)
        hit = self.cache.path_for(cs)
        if hit is not None:
            return PRESENT_CACHE, str(hit)
        name = filename_from_url(url) or None
        for mirror in self.mirrors:
            for location in mirror.locations(cs, name):
                if self._exists(mirror, location):
                    return PRESENT_MIRROR, location
        could = [f"Debian source package {debian}"] if debian else []
        if url.startswith(("http://", "https://", "ftp://")):
            could.append(url)
        return MISSING, "could be fetched from " + " or ".join(could) if could else "no mirror has it"

    def _exists(self, mirror: Mirror, location: str) -> bool:
        if isinstance(mirror, DirectoryMirror):
            return Path(location).is_file()
        if isinstance(mirror, HttpMirror):
            self.session = self.session or requests.Session()
            try:
                response = self.session.head(location, timeout=10, allow_redirects=True)
            except requests.RequestException:
                return False
            return response.status_code == 200
        return False
