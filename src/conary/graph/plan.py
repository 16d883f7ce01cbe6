"""What a graph build is asked to do, and what it reports: the typed API the CLI and the bootstrap use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conary.graph.executor import Executor
from conary.recipe import TargetMacros

# Actions a package ends a run with.
BUILT = "built"  # cooked: no checkpoint had its key
CACHED = "cached"  # its key has a checkpoint: nothing to do
CUTOFF = "cutoff"  # cooked again, and its output digest is the one it had before
FAILED = "failed"
BLOCKED = "blocked"  # a dependency failed, so it was not tried
PENDING = "pending"  # the dry run's answer for a package that would be cooked
ACTIONS = (BUILT, CACHED, CUTOFF, FAILED, BLOCKED, PENDING)


@dataclass(frozen=True)
class BuildEvent:
    """One thing that happened, for progress displays: `started`, `step` (text says which),
    `finished` (action says how), in the order they happen."""

    kind: str
    name: str
    action: str = ""
    text: str = ""
    done: int = 0  # packages finished so far (cached included)
    total: int = 0
    # Each cook in progress: (name, step, seconds since it started), from the store.
    running: tuple[tuple[str, str, float], ...] = ()
    eta: float | None = None  # seconds left, from the store's durations; None when unknown


@dataclass(frozen=True)
class BuildRequest:
    """One graph build: a set of recipes, where their packages go, and what their roots stand on.

    `seed` and `base` are .ccs files or directories of them: the seed's packages and earlier
    stages' packages, installed together into one base root under each recipe's dependency root.
    `host_seed` puts the host's /usr (read-only) at the very bottom instead of, or under, those.
    """

    recipes: tuple[Path, ...]
    output: Path  # the package repository: NAME-VERSION-RELEASE.ARCH.ccs files
    state: Path  # the checkpoint store, kept packages, roots, logs
    stage: str = "final"
    target: TargetMacros | None = None  # None: this machine
    toolchain: str = ""  # the toolchain identity (goes into every key)
    seed: tuple[Path, ...] = ()
    host_seed: bool = False
    base: tuple[Path, ...] = ()
    break_edges: tuple[tuple[str, str], ...] = ()  # (dependent, dependency) edges to drop
    jobs: int = 1  # packages built at once
    jobs_per_package: int | None = None  # MAKEFLAGS -j inside each build; None: the recipe's own
    keep_going: bool = False
    source_cache: Path | None = None
    mirrors: tuple[str, ...] = ()
    offline: bool = False
    # --skip-verify: sources are fetched before the keys, and one whose pinned bytes are nowhere is
    # built from the other bytes found; each key names those bytes (conary.graph.unverified).
    skip_verify: bool = False
    signing_key: Path | None = None  # None: the user's default key
    trusted_keys: tuple[Path, ...] = ()  # public keys the seed and base packages are signed with
    progress: Callable[[BuildEvent], None] | None = field(default=None, compare=False)
    executor: Executor | None = field(default=None, compare=False)  # None: LocalExecutor
    warn: Callable[[str], None] | None = field(default=None, compare=False)  # None: to stderr


@dataclass(frozen=True)
class PackageResult:
    name: str
    version: str
    action: str  # one of ACTIONS
    key: str  # "" when blocked (its dependencies' digests are not known)
    output_digest: str  # "" unless built, cached or cutoff
    seconds: float  # the cook's time (for cached: the time the checkpointed cook took)
    log: str  # the log directory or file; "" when none
    tail: tuple[str, ...] = ()  # last log lines of a failure

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "action": self.action,
            "key": self.key,
            "output_digest": self.output_digest,
            "seconds": round(self.seconds, 3),
            "log": self.log,
        }


@dataclass(frozen=True)
class BuildReport:
    results: tuple[PackageResult, ...]  # in graph order, whatever -j was

    @property
    def ok(self) -> bool:
        return all(r.action not in (FAILED, BLOCKED) for r in self.results)

    def count(self, action: str) -> int:
        return sum(1 for r in self.results if r.action == action)


@dataclass(frozen=True)
class PackageStatus:
    """A package's state in the store: done (a checkpoint for its current key), pending, failed,
    or running (a cook of it has started and not finished)."""

    name: str
    state: str
    key: str
    seconds: float
    log: str


@dataclass(frozen=True)
class WhyReport:
    name: str
    previous_key: str  # "" when NAME never had a checkpoint
    current_key: str
    changes: tuple[str, ...]  # "- old line" / "+ new line" from the two key texts

    @property
    def unchanged(self) -> bool:
        return bool(self.previous_key) and self.previous_key == self.current_key
