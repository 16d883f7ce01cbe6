"""The bootstrap driver: run a profile's stages in order on the RecipeGraph, for one target.

Every stage with recipes is one graph build over ONE checkpoint store in the work dir, so a package
whose key has a checkpoint is never built again, in any stage, and a killed run loses at most the
packages that were being cooked. Running a stage first runs every earlier stage; an earlier stage
that is done is a graph no-op (every key has its checkpoint), so "run the stages not yet done" needs
no bookkeeping of its own beyond the store.

Work dir layout::

    bootstrap.toml        the choices of `bootstrap init` (conary.bootstrap.config)
    state/                the graph's checkpoint store, kept packages, build roots and logs
    repo/seed/            the seed: the lock's Debian packages imported to CCS (absent with --seed host)
    repo/<stage>/         each stage's packages
    run.toml              the stage the last run was asked to reach (for `resume`)
    stage2-report.toml    Stage2's reproducibility verdict, package by package
"""

from __future__ import annotations

import hashlib
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import tomli_w

from conary.bootstrap.config import BootstrapConfig
from conary.bootstrap.dryrun import skip_reason
from conary.bootstrap.imagestage import build_stage_image
from conary.bootstrap.profile import DebianSpec, Profile, StageSpec
from conary.bootstrap.seed import SEED_HOST, lock_path
from conary.ccs import generate_keypair, load_signing_key
from conary.errors import ConaryError, InputError
from conary.fsutil import atomic_write_bytes
from conary.graph import (
    BLOCKED,
    FAILED,
    BuildEvent,
    BuildRequest,
    CheckpointStore,
    PackageResult,
    PackageStatus,
    WhyReport,
    build,
    status,
    why,
)
from conary.graph.store import kept_package
from conary.image import ImageDefinition, load_definition
from conary.targets import Target

DONE, PENDING, FAILED_STATE, RUNNING, SKIPPED = "done", "pending", "failed", "running", "skipped"
REPRODUCIBLE, DIFFERS = "reproducible", "differs"

Progress = Callable[[str, BuildEvent], None]  # (stage, event)


@dataclass(frozen=True)
class Layout:
    work: Path

    @property
    def state(self) -> Path:
        return self.work / "state"

    def repo(self, stage: str) -> Path:
        return self.work / "repo" / stage

    @property
    def seed_repo(self) -> Path:
        return self.work / "repo" / "seed"

    @property
    def seed_marker(self) -> Path:
        """Written last by a complete seed import: the sha256 of the lock it imported."""
        return self.seed_repo / ".imported"

    def debian_repo(self, stage: str) -> Path:
        """The Debian packages a stage imports (its `debian` table), beside the graph's repo."""
        return self.work / "repo" / f"{stage}.debian"

    def debian_marker(self, stage: str) -> Path:
        return self.debian_repo(stage) / ".imported"

    def image(self, name: str, arch: str, fmt: str) -> Path:
        return self.work / "image" / f"{name}-{arch}.{fmt}"

    @property
    def signing_key(self) -> Path:
        """The work dir's own key (and KEY.pub): every package of the bootstrap is signed by it, and
        its build roots and images trust it, whoever runs the bootstrap and whatever their default
        key is at the time (a resumed run, another user, a test session of its own)."""
        return self.work / "keys" / "bootstrap"

    @property
    def run_record(self) -> Path:
        return self.work / "run.toml"

    @property
    def stage2_report(self) -> Path:
        return self.work / "stage2-report.toml"


@dataclass(frozen=True)
class Reproducibility:
    """Stage2's verdict: each package of the rebuilt stage with both output digests."""

    package: str
    first: str  # output digest in the stage it rebuilds
    second: str  # output digest in Stage2
    verdict: str  # reproducible or differs


@dataclass(frozen=True)
class StageResult:
    name: str
    state: str  # done, failed or skipped
    reason: str  # why skipped, or what failed
    seconds: float
    packages: tuple[PackageResult, ...] = ()
    reproducibility: tuple[Reproducibility, ...] = ()
    image: Path | None = None  # the Image stage's disk

    @property
    def failures(self) -> tuple[PackageResult, ...]:
        return tuple(p for p in self.packages if p.action == FAILED)


@dataclass(frozen=True)
class RunReport:
    stages: tuple[StageResult, ...]

    @property
    def ok(self) -> bool:
        return all(s.state != FAILED_STATE for s in self.stages)


@dataclass(frozen=True)
class StageStatus:
    name: str
    state: str  # done, pending, failed, running or skipped
    reason: str
    packages: tuple[PackageStatus, ...]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.packages)


@dataclass(frozen=True)
class Bootstrap:
    """One work dir's bootstrap: its choices, profile and target."""

    config: BootstrapConfig
    profile: Profile
    target: Target
    keep_going: bool = False
    progress: Progress | None = field(default=None, compare=False)
    # Imports the lock's Debian packages into the seed repo as .ccs files: (lock, repo) -> None.
    seed_importer: Callable[[Path, Path, Path], None] | None = field(default=None, compare=False)
    # Imports a stage's Debian packages: (lock, spec, repo) -> None.
    debian_importer: Callable[[Path, DebianSpec, Path, Path], None] | None = field(
        default=None, compare=False
    )
    image_format: str | None = None  # the Image stage's format and size, over its definition's
    image_size: str | None = None
    notice: Callable[[str], None] | None = field(default=None, compare=False)

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.config.work))

    # ------------------------------------------------------------------ what each stage builds on

    def toolchain_identity(self) -> str:
        """What every key of this bootstrap shares: the target's file and the seed (its lock's
        bytes, or the host). A new lock or target file changes every key."""
        lines = [f"target:{self.target.arch}:{_sha256(self.target.path)}"]
        if self.config.seed == SEED_HOST:
            lines.append("seed:host")
        else:
            lock = lock_path(self.profile, self.target)
            lines.append(f"seed:lock:{_sha256(lock) if lock.is_file() else 'missing'}")
        return ";".join(lines)

    def active_stages(self) -> tuple[StageSpec, ...]:
        return tuple(s for s in self.profile.stages if not self.skip_reason(s))

    def skip_reason(self, stage: StageSpec) -> str:
        reason = skip_reason(
            stage, self.target, skip_stage2=self.config.skip_stage2, skip_conary=self.config.skip_conary
        )
        return reason

    def request(self, stage: StageSpec) -> BuildRequest:
        """The graph build of *stage*: its recipes, over the seed and the earlier stages it names."""
        layout = self.layout
        seed: tuple[Path, ...] = ()
        host = False
        if "seed" in stage.root or not stage.root:
            if self.config.seed == SEED_HOST:
                host = True
            else:
                seed = (layout.seed_repo,)
        base = tuple(layout.repo(name) for name in stage.root if name != "seed")
        return BuildRequest(
            recipes=tuple(self.profile.recipes_of(stage)),
            output=layout.repo(stage.name),
            state=layout.state,
            stage=stage.name,
            target=self.target.macros(),
            toolchain=self.toolchain_identity(),
            seed=seed,
            host_seed=host,
            base=base,
            break_edges=stage.break_edges,
            jobs=self.config.jobs,
            keep_going=self.keep_going,
            source_cache=self.config.source_cache,
            mirrors=self.config.mirrors,
            skip_verify=self.config.skip_verify,
            signing_key=self.signing_key(),
        )

    def signing_key(self) -> Path:
        """The work dir's signing key, made on first use (a killed run may have left the secret
        half alone: the public half is derived from it again)."""
        private = self.layout.signing_key
        public = private.with_name(private.name + ".pub")
        if not private.is_file():
            private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            public.unlink(missing_ok=True)
            generate_keypair(private)
        elif not public.is_file():
            atomic_write_bytes(public, load_signing_key(private).public_key.to_text().encode())
        return private

    # ------------------------------------------------------------------ running

    def stage_choices(self) -> tuple[str, ...]:
        """What `bootstrap STAGE` accepts: stage0 (the seed, and the profile's stage0 if it has
        one) and every stage of the profile."""
        return tuple(dict.fromkeys(("stage0", *self.profile.stage_names())))

    def run(self, until: str | None = None) -> RunReport:
        """Import the seed, then run every stage up to and including *until* (None: all of them)."""
        if until is not None and until not in self.stage_choices():
            raise InputError(
                f"profile {self.profile.name} has no stage '{until}'",
                where=str(self.profile.path),
                hint=f"its stages: {', '.join(self.stage_choices())}",
            )
        last = until or self.profile.stage_names()[-1]
        self._record_run(last)
        results: list[StageResult] = [self._run_seed()]
        if results[0].state == FAILED_STATE or last not in self.profile.stage_names():
            return RunReport(tuple(results))
        for stage in self.profile.stages:
            result = self._run_stage(stage)
            results.append(result)
            if result.state == FAILED_STATE or stage.name == last:
                break
        return RunReport(tuple(results))

    def _run_seed(self) -> StageResult:
        if self.config.seed == SEED_HOST:
            return StageResult("seed", SKIPPED, "the host's /usr is the seed (--seed host)", 0.0)
        if self.seed_imported():
            return StageResult("seed", DONE, "imported before", 0.0)
        lock = lock_path(self.profile, self.target)
        if not lock.is_file():
            raise InputError(
                f"no seed lock for {self.target.arch}",
                where=str(lock),
                hint=f"run 'conary bootstrap seed --lock --target {self.target.arch}' (or use --seed host)",
            )
        if self.seed_importer is None:
            raise ConaryError(
                "this Conary cannot import a seed lock",
                where=str(lock),
                hint="init the work dir with --seed host",
            )
        started = time.perf_counter()
        repo = self.layout.seed_repo
        repo.mkdir(parents=True, exist_ok=True)
        self.seed_importer(lock, repo, self.signing_key())
        # The marker is written last: a killed import is imported again (cached .debs are reused).
        atomic_write_bytes(self.layout.seed_marker, (_sha256(lock) + "\n").encode())
        return StageResult("seed", DONE, f"imported {lock.name}", time.perf_counter() - started)

    def resume(self) -> RunReport:
        """Run again towards the stage the last run was asked to reach."""
        record = self.layout.run_record
        until = None
        if record.is_file():
            until = tomllib.loads(record.read_text()).get("until")
        return self.run(until)

    def _record_run(self, until: str) -> None:
        self.layout.work.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.layout.run_record, tomli_w.dumps({"until": until}).encode())

    def _run_stage(self, stage: StageSpec) -> StageResult:
        reason = self.skip_reason(stage)
        if reason:
            return StageResult(stage.name, SKIPPED, reason, 0.0)
        started = time.perf_counter()
        if stage.image is not None:
            return self._run_image(stage)
        if stage.debian is not None:
            self._import_debian(stage)
        recipes = self.profile.recipes_of(stage)
        if not recipes:
            return StageResult(stage.name, DONE, "no recipes", time.perf_counter() - started)
        request = self.request(stage)
        if self.progress is not None:
            progress = self.progress
            request = replace(request, progress=lambda event: progress(stage.name, event))
        report = build(request)
        seconds = time.perf_counter() - started
        failed = [r for r in report.results if r.action in (FAILED, BLOCKED)]
        if failed:
            names = ", ".join(f"{r.name} ({r.action})" for r in failed)
            return StageResult(stage.name, FAILED_STATE, names, seconds, report.results)
        verdicts: tuple[Reproducibility, ...] = ()
        if stage.rebuild:
            verdicts = self._compare(stage, report.results)
        return StageResult(stage.name, DONE, "", seconds, report.results, verdicts)

    def _debian_lock(self, stage: StageSpec) -> Path:
        assert stage.debian is not None
        return self.profile.tree / "stages" / "seed" / f"{stage.debian.lock_name(self.target.arch)}.lock"

    def _debian_digest(self, stage: StageSpec) -> str:
        assert stage.debian is not None
        lock = self._debian_lock(stage)
        spec = f"{stage.debian.packages}|{stage.debian.omit}"
        return hashlib.sha256(f"{_sha256(lock)}|{spec}".encode()).hexdigest()

    def debian_imported(self, stage: StageSpec) -> bool:
        marker = self.layout.debian_marker(stage.name)
        return marker.is_file() and marker.read_text().strip() == self._debian_digest(stage)

    def _import_debian(self, stage: StageSpec) -> None:
        """The stage's Debian packages into its .debian repo, once per lock and package list."""
        assert stage.debian is not None
        lock = self._debian_lock(stage)
        if not lock.is_file():
            raise InputError(
                f"stage {stage.name} needs the lock {lock.name}, which does not exist",
                where=str(lock),
                hint=f"write it with 'conary seed lock', or skip the stage (--skip-{stage.name})",
            )
        if self.debian_imported(stage):
            return
        if self.debian_importer is None:
            raise ConaryError("this Conary cannot import Debian packages", where=str(lock))
        repo = self.layout.debian_repo(stage.name)
        if repo.is_dir():
            shutil.rmtree(repo)  # a different list or lock: start over (cached .debs are reused)
        repo.mkdir(parents=True)
        self.debian_importer(lock, stage.debian, repo, self.signing_key())
        atomic_write_bytes(
            self.layout.debian_marker(stage.name), (self._debian_digest(stage) + "\n").encode()
        )

    def image_inputs(self, stage: StageSpec) -> tuple[list[Path], list[str]]:
        """The package files an Image stage may install (the current packages of each stage it
        names as its root, and their Debian imports) and the names earlier stages add to it."""
        files: list[Path] = []
        extra: list[str] = []
        for name in stage.root:
            if name == "seed":
                continue
            earlier = self.profile.stage(name)
            if self.skip_reason(earlier):
                continue
            extra += earlier.image_packages
            if self.profile.recipes_of(earlier):
                for package in status(self.request(earlier)):
                    if package.state != DONE:
                        raise InputError(
                            f"stage {name} is not done ({package.name} is {package.state})",
                            where=str(self.layout.work),
                            hint=f"run 'conary bootstrap {name}' first",
                        )
                    files.append(kept_package(self.layout.state, package.key))
            if earlier.debian is not None:
                files += sorted(self.layout.debian_repo(name).glob("*.ccs"))
        return files, extra

    def image_definition(self, stage: StageSpec) -> ImageDefinition:
        assert stage.image is not None
        definition = load_definition(stage.image)
        if self.image_format:
            definition = definition.with_format(self.image_format)
        if self.image_size:
            definition = definition.with_size(self.image_size)
        return definition

    def image_path(self, stage: StageSpec) -> Path:
        definition = self.image_definition(stage)
        return self.layout.image(definition.name, self.target.arch, definition.format)

    def _run_image(self, stage: StageSpec) -> StageResult:
        files, extra = self.image_inputs(stage)
        definition = self.image_definition(stage)
        output = self.image_path(stage)
        key = self.signing_key()
        trust = key.with_name(key.name + ".pub")
        outcome = build_stage_image(definition, self.target, output, files, extra, trust, say=self.notice)
        what = "cached" if outcome.cached else f"built ({len(outcome.packages)} packages)"
        return StageResult(stage.name, DONE, f"{what}: {outcome.path}", outcome.seconds, image=outcome.path)

    def seed_imported(self) -> bool:
        lock = lock_path(self.profile, self.target)
        marker = self.layout.seed_marker
        return lock.is_file() and marker.is_file() and marker.read_text().strip() == _sha256(lock)

    def _compare(self, stage: StageSpec, results: tuple[PackageResult, ...]) -> tuple[Reproducibility, ...]:
        """Stage2: each package's output digest against the one it had in the stage it rebuilds."""
        assert stage.rebuild is not None
        first = {p.name: p.key for p in status(self.request(self.profile.stage(stage.rebuild)))}
        digests = _digests_of(self.layout.state, first)
        verdicts = []
        for result in results:
            before = digests.get(result.name, "")
            verdict = REPRODUCIBLE if before and before == result.output_digest else DIFFERS
            verdicts.append(Reproducibility(result.name, before, result.output_digest, verdict))
        report = {
            "stage": stage.name,
            "rebuilds": stage.rebuild,
            "packages": [vars(v) for v in verdicts],
        }
        atomic_write_bytes(self.layout.stage2_report, tomli_w.dumps(report).encode())
        return tuple(verdicts)

    # ------------------------------------------------------------------ queries

    def status(self) -> tuple[StageStatus, ...]:
        out: list[StageStatus] = []
        blocked = ""
        for stage in self.profile.stages:
            reason = self.skip_reason(stage)
            if reason:
                out.append(StageStatus(stage.name, SKIPPED, reason, ()))
                continue
            if stage.image is not None:
                disk = self.image_path(stage)
                built = disk.is_file() and disk.with_name(disk.name + ".key").is_file()
                state = DONE if built and not blocked else PENDING
                out.append(StageStatus(stage.name, state, str(disk) if built else blocked, ()))
                continue
            if stage.debian is not None and not self.debian_imported(stage):
                out.append(StageStatus(stage.name, PENDING, blocked or "Debian packages not imported", ()))
                blocked = blocked or f"waiting for {stage.name}"
                continue
            if not self.profile.recipes_of(stage) and not blocked:
                out.append(StageStatus(stage.name, DONE, "no recipes", ()))
                continue
            if blocked or not self._inputs_ready(stage):
                out.append(StageStatus(stage.name, PENDING, blocked or "waiting for earlier stages", ()))
                blocked = blocked or f"waiting for {stage.name}"
                continue
            packages = status(self.request(stage))
            states = {p.state for p in packages}
            if states <= {DONE}:
                state = DONE
            elif FAILED_STATE in states:
                state = FAILED_STATE
            elif RUNNING in states:
                state = RUNNING
            else:
                state = PENDING
            if state != DONE:
                blocked = f"waiting for {stage.name}"
            out.append(StageStatus(stage.name, state, "", packages))
        return tuple(out)

    def _inputs_ready(self, stage: StageSpec) -> bool:
        request = self.request(stage)
        if request.seed and not self.seed_imported():
            return False
        return all(path.is_dir() for path in request.base)

    def why(self, name: str) -> tuple[str, WhyReport]:
        """Which key inputs of NAME changed since its last checkpoint, in the first stage that builds it."""
        for stage in self.active_stages():
            recipes = self.profile.recipes_of(stage)
            if recipes and self._inputs_ready(stage):
                try:
                    return stage.name, why(self.request(stage), name)
                except ConaryError:
                    continue
        raise InputError(
            f"no stage of profile {self.profile.name} builds {name}",
            where=str(self.profile.path),
            hint="name a package of the profile whose stage's earlier stages are done",
        )

    def clean(self, stage_name: str | None = None) -> list[Path]:
        """Forget built outputs: a stage's packages (their checkpoints stop counting, so they are
        built again), or with no stage everything but the choices in bootstrap.toml and the work
        dir's signing key (what a package signed by it is trusted by stays the same)."""
        layout = self.layout
        removed: list[Path] = []
        if stage_name is None:
            for path in (
                layout.state,
                layout.work / "repo",
                layout.work / "image",
                layout.run_record,
                layout.stage2_report,
            ):
                if path.is_dir():
                    shutil.rmtree(path)
                    removed.append(path)
                elif path.exists():
                    path.unlink()
                    removed.append(path)
            return removed
        if stage_name == "seed":
            if layout.seed_repo.is_dir():
                shutil.rmtree(layout.seed_repo)
                removed.append(layout.seed_repo)
            return removed
        stage = self.profile.stage(stage_name)
        if stage.image is not None:
            images = layout.work / "image"
            if images.is_dir():
                shutil.rmtree(images)
                removed.append(images)
            return removed
        if stage.debian is not None and layout.debian_repo(stage.name).is_dir():
            shutil.rmtree(layout.debian_repo(stage.name))
            removed.append(layout.debian_repo(stage.name))
        if self.profile.recipes_of(stage) and self._inputs_ready(stage):
            for package in status(self.request(stage)):
                kept = kept_package(layout.state, package.key) if package.key else None
                if kept is not None and kept.is_file():
                    kept.unlink()
                    removed.append(kept)
        repo = layout.repo(stage.name)
        if repo.is_dir():
            shutil.rmtree(repo)
            removed.append(repo)
        return removed


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests_of(state: Path, keys: dict[str, str]) -> dict[str, str]:
    """The output digest of each name's checkpoint for the given key."""
    out: dict[str, str] = {}
    with CheckpointStore(state) as store:
        for name, key in keys.items():
            cp = store.get(key) if key else None
            if cp is not None:
                out[name] = cp.output_digest
    return out
