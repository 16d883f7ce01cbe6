"""Stage0 from a lock: resolve the seed into stages/seed/<arch>.lock, and import a lock's Debian
packages (downloaded into the source cache by sha256, verified) as .ccs files for the seed repo.

conary.debian does the work (docs/debian-import.md); this module decides what the bootstrap asks of
it: which packages (the profile's seed list, plus the target's cross compilers), which suite, where
the lock goes, and which key signs the imported packages (the user's default key, the one the graph
trusts for build roots).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conary.bootstrap.profile import DebianSpec, Profile
from conary.bootstrap.seed import lock_path, seed_packages
from conary.ccs import ensure_default_key, load_signing_key
from conary.debian.lock import read_lock, write_lock
from conary.debian.seed import import_lock_packages, import_seed, lock_seed
from conary.fetch import SourceCache, default_cache_dir
from conary.targets import Target

Notice = Callable[[str], None]


def apt_state_dir(cache_dir: Path) -> Path:
    """The private apt state for binary packages, beside the source cache (as `conary seed` uses)."""
    return cache_dir / ".debian-apt-deb"


def lock_the_seed(
    profile: Profile, target: Target, *, source_cache: Path | None = None, output: Path | None = None
) -> tuple[Path, int, int]:
    """Resolve the seed's closure with apt and write the lock; (path, packages, bytes)."""
    cache_dir = source_cache or default_cache_dir()
    lock = lock_seed(
        target.arch,
        state_dir=apt_state_dir(cache_dir),
        suite=profile.seed.suite,
        packages=list(seed_packages(profile, target)),
    )
    path = output or lock_path(profile, target)
    write_lock(lock, path)
    return path, len(lock.debs), lock.total_size


def import_lock(
    lock_file: Path,
    repo: Path,
    *,
    source_cache: Path | None = None,
    signing_key: Path | None = None,
    notice: Notice | None = None,
) -> list[str]:
    """Download (when not cached), verify and import every package *lock_file* pins into *repo*,
    with the seed fixups; returns the warnings (packages whose maintainer scripts were not run)."""
    cache_dir = source_cache or default_cache_dir()
    lock = read_lock(lock_file)
    key = load_signing_key(signing_key) if signing_key else ensure_default_key()[0]

    def on_event(phase: str, done: int, total: int, name: str) -> None:
        if notice is not None and (done == total or done % 25 == 0):
            notice(f"seed {phase}: {done}/{total} ({name})")

    _paths, warnings = import_seed(
        lock, SourceCache(cache_dir), repo, key, state_dir=apt_state_dir(cache_dir), on_event=on_event
    )
    return warnings


def import_stage_debs(
    lock_file: Path,
    spec: DebianSpec,
    repo: Path,
    *,
    source_cache: Path | None = None,
    signing_key: Path | None = None,
    notice: Notice | None = None,
) -> list[str]:
    """A stage's Debian packages (its `debian` table) from *lock_file* into *repo*: the closure of
    the spec's packages without its omitted names. Returns the warnings, as import_lock does."""
    cache_dir = source_cache or default_cache_dir()
    key = load_signing_key(signing_key) if signing_key else ensure_default_key()[0]

    def on_event(phase: str, done: int, total: int, name: str) -> None:
        if notice is not None and (done == total or done % 25 == 0):
            notice(f"{lock_file.stem} {phase}: {done}/{total} ({name})")

    _paths, warnings = import_lock_packages(
        read_lock(lock_file),
        SourceCache(cache_dir),
        repo,
        key,
        packages=spec.packages,
        omit=spec.omit,
        state_dir=apt_state_dir(cache_dir),
        on_event=on_event,
    )
    return warnings
