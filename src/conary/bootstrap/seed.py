"""The seed (Stage0 of a native build): which Debian packages, which lock pins them, and whether a
run has what it needs to install them.

The lock (stages/seed/<arch>.lock) pins the closure of the profile's seed packages: name, version,
architecture, suite and the sha256 of each .deb. `--seed host` uses the host's /usr instead,
read-only, for trying a profile quickly on a normal machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conary.bootstrap.profile import Profile
from conary.debian.lock import read_lock
from conary.fetch import SourceCache
from conary.targets import Target

SEED_LOCK = "lock"
SEED_HOST = "host"
SEED_MODES = (SEED_LOCK, SEED_HOST)


@dataclass(frozen=True)
class SeedPlan:
    mode: str  # lock or host
    suite: str
    packages: tuple[str, ...]  # the profile's seed list plus the target's cross packages
    lock: Path
    lock_present: bool
    debs: int = 0  # packages the lock pins
    debs_cached: int = 0  # of those, already in the source cache (by sha256)

    @property
    def ok(self) -> bool:
        return self.mode == SEED_HOST or (self.lock_present and self.debs_cached == self.debs)

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "suite": self.suite,
            "packages": list(self.packages),
            "lock": str(self.lock),
            "lock_present": self.lock_present,
            "debs": self.debs,
            "debs_cached": self.debs_cached,
        }


def seed_packages(profile: Profile, target: Target) -> tuple[str, ...]:
    """The Debian packages whose closure is the seed: the profile's, plus the cross compilers when
    the target is not this machine's architecture."""
    extra = () if target.is_native else target.cross_packages
    return tuple(dict.fromkeys((*profile.seed.packages, *extra)))


def lock_path(profile: Profile, target: Target) -> Path:
    return profile.tree / "stages" / "seed" / f"{target.arch}.lock"


def seed_plan(
    profile: Profile, target: Target, *, mode: str = SEED_LOCK, cache: SourceCache | None = None
) -> SeedPlan:
    lock = lock_path(profile, target)
    debs = cached = 0
    if mode != SEED_HOST and lock.is_file():
        pinned = read_lock(lock).debs
        debs = len(pinned)
        if cache is not None:
            cached = sum(1 for deb in pinned if cache.path_for(f"sha256:{deb.sha256}") is not None)
    return SeedPlan(
        mode=mode,
        suite=profile.seed.suite,
        packages=seed_packages(profile, target),
        lock=lock,
        lock_present=lock.is_file(),
        debs=debs,
        debs_cached=cached,
    )
