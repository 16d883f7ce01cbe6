"""Bootstrap seeds: which Debian packages, locking them, downloading by lock, and importing to CCS.

    seed_packages(target) -> list of Debian package names (native list + the target's cross packages)
    lock_seed(target, state_dir=...) -> SeedLock       # resolve with apt in a private state
    download_lock(lock, cache) -> list[Path]            # into the source cache by sha256, verified
    import_seed(lock, cache, output_dir, key) -> (.ccs paths, warnings)  # the seed fixups included

The bootstrap installs the returned .ccs files into the Stage0 root with the runtime
(``conary.runtime.install_packages``). docs/debian-import.md describes all of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conary.ccs.keys import SigningKey
from conary.debian import relations
from conary.debian.batch import import_debs
from conary.debian.debfile import DebControl, DebFile
from conary.debian.errors import PinnedFileGone, SeedError
from conary.debian.fixups import build_fixups_package, load_fixups
from conary.debian.lock import PinnedDeb, SeedLock, current_version, private_apt, resolve_lock
from conary.distro_tree import tree_dir
from conary.fetch.cache import SourceCache
from conary.fetch.checksum import Checksum
from conary.fetch.debian import derive_source_entries, retarget_suite
from conary.fetch.errors import ChecksumMismatchError, SourceUnavailable
from conary.fetch.http import HttpDownloader
from conary.targets import load_target

# The native seed: what Stage1 and Base need to build the Linux headers, musl, busybox and a
# kernel, in a root made of nothing else. Debian's Essential set (coreutils, bash, dash, sed,
# grep, tar, gzip, findutils, diffutils...) is always added by the resolver. mawk is Debian's
# "required" awk that the kernel's scripts call; usr-is-merged stands in for usrmerge, whose only
# job is a postinst that converts / to a merged /usr (which a converted root never runs).
NATIVE_SEED = (
    "build-essential",
    "bc",
    "flex",
    "bison",
    "libelf-dev",
    "perl",
    "cpio",
    "mawk",
    "usr-is-merged",
)
# The x86_64 Conary stage: Python and Conary's runtime dependencies from Debian (docs/debian-import.md
# lists what Debian lacks: pyfastcdc).
CONARY_STAGE = (
    "python3",
    "python3-zstandard",
    "python3-nacl",
    "python3-cbor2",
    "python3-pyelftools",
    "python3-requests",
    "python3-tomli-w",
    "python3-jinja2",
    "python3-resolvelib",
    "python3-rich",
    "python3-doit",
    "usr-is-merged",
)
DEFAULT_SUITE = "bookworm"
BUILD_ARCHITECTURE = "amd64"  # the build machine's Debian architecture: seeds run on x86_64
DOWNLOAD_THREADS = 8


def seed_dir() -> Path:
    return tree_dir("stages") / "seed"


def lock_path(name: str) -> Path:
    """``stages/seed/<name>.lock``; names are targets (x86_64, aarch64, riscv64) or conary-x86_64."""
    return seed_dir() / f"{name}.lock"


def cross_packages(target: str) -> list[str]:
    """The target's ``[cross] packages`` (toolchains/<target>.toml)."""
    return list(load_target(target).cross_packages)


def seed_packages(target: str, native: str = "x86_64") -> list[str]:
    """The Debian packages of *target*'s seed: the native list, plus cross compilers when *target*
    is not the build machine's architecture."""
    packages = list(NATIVE_SEED)
    if target != native:
        packages += cross_packages(target)
    return packages


def lock_seed(
    target: str,
    *,
    state_dir: Path,
    suite: str = DEFAULT_SUITE,
    packages: Sequence[str] | None = None,
    etc_apt: Path = Path("/etc/apt"),
) -> SeedLock:
    """Resolve *target*'s seed (or *packages*, for a lock named *target*) into a lock; not written."""
    if target.startswith("conary-"):
        wanted = list(packages or CONARY_STAGE)
        summary = "The Conary stage: Python and Conary's runtime dependencies."
    else:
        wanted = list(packages or seed_packages(target))
        summary = f"Stage0 of a {target} bootstrap: Debian's toolchain" + (
            " and cross compilers." if target != "x86_64" else "."
        )
    return resolve_lock(
        target,
        wanted,
        suite=suite,
        architecture=BUILD_ARCHITECTURE,
        state_dir=state_dir,
        summary=summary,
        etc_apt=etc_apt,
    )


# --------------------------------------------------------------------------------------- download


def archive_uris(lock: SeedLock, etc_apt: Path = Path("/etc/apt")) -> list[str]:
    """The archive bases to fetch the lock's pool files from, derived from the machine's apt sources."""
    entries = retarget_suite(derive_source_entries(etc_apt, "deb"), lock.suite, companions=True)
    uris = [entry.get("URIs") or "" for entry in entries]
    bases = list(dict.fromkeys(u.rstrip("/") for uri in uris for u in uri.split() if u))
    if not bases:
        raise SeedError(f"no apt sources in {etc_apt} to download Debian {lock.suite} packages from")
    return bases


def download_lock(
    lock: SeedLock,
    cache: SourceCache,
    *,
    state_dir: Path,
    etc_apt: Path = Path("/etc/apt"),
    uris: Sequence[str] | None = None,
    on_done: Callable[[int, int, str], None] | None = None,
) -> list[Path]:
    """Every .deb of *lock* in the source cache (by sha256, verified), in the lock's order.

    Files already in the cache are not fetched. A pool file the archive no longer has raises
    PinnedFileGone, naming the file and the version the archive has now.
    """
    bases = list(uris) if uris is not None else archive_uris(lock, etc_apt)
    local = threading.local()
    done = 0
    lock_done = threading.Lock()

    def fetch(deb: PinnedDeb) -> Path:
        nonlocal done
        checksum = Checksum("sha256", deb.sha256)
        with cache.lock(checksum):
            path = cache.path_for(checksum) or _download(deb, checksum)
        with lock_done:
            done += 1
            if on_done:
                on_done(done, len(lock.debs), deb.name)
        return path

    def _download(deb: PinnedDeb, checksum: Checksum) -> Path:
        downloader = getattr(local, "downloader", None)
        if downloader is None:
            downloader = local.downloader = HttpDownloader(progress=False)
        reasons = []
        for base in bases:
            url = f"{base}/{deb.filename}"
            try:
                return downloader.download(url, cache, checksum)
            except SourceUnavailable as exc:
                reasons.append((url, exc.reason))
            except ChecksumMismatchError as exc:
                raise SeedError(
                    f"{deb.file_name} from {url} does not match the lock: {exc.what}",
                    hint="the archive or a proxy serves other bytes under this name; check the mirror",
                ) from None
        if all(reason in ("404", "410") for _, reason in reasons):
            raise _gone(lock, deb, state_dir, etc_apt)
        shown = "; ".join(f"{url}: {reason}" for url, reason in reasons)
        raise SeedError(f"cannot download {deb.file_name}: {shown}", hint="check the network and retry")

    with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
        return list(pool.map(fetch, lock.debs))


def _gone(lock: SeedLock, deb: PinnedDeb, state_dir: Path, etc_apt: Path) -> SeedError:
    now = current_version(private_apt(state_dir, lock.suite, lock.architecture, etc_apt), deb.name)
    if now == deb.version:
        # The index lists the pinned version, yet the pool answers 404: a mirror between updates.
        return SeedError(
            f"Debian's index lists {deb.name} {deb.version}, but its pool lacks {deb.filename} (404)",
            where=f"seed lock {lock.name}",
            hint="the archive dropped the file after publishing the index; retry after its next update",
        )
    has = f"it now has {deb.name} {now}" if now else f"it has no {deb.name} now"
    return PinnedFileGone(
        f"{deb.filename} (pinned {deb.name} {deb.version}) is no longer in Debian's archive; {has}",
        where=f"seed lock {lock.name}",
        hint=f"run 'conary bootstrap seed --lock --target {lock.name}' (or 'conary seed lock {lock.name}') "
        "to pin the archive's current versions",
    )


# --------------------------------------------------------------------------------------- import


def import_seed(
    lock: SeedLock,
    cache: SourceCache,
    output_dir: str | os.PathLike[str],
    signing_key: SigningKey | str | os.PathLike[str],
    *,
    state_dir: Path,
    etc_apt: Path = Path("/etc/apt"),
    jobs: int | None = None,
    fixups: Path | bool = True,
    on_event: Callable[[str, int, int, str], None] | None = None,
) -> tuple[list[Path], list[str]]:
    """Download *lock*'s .debs (when not cached), convert them, and build the seed fixups package.

    Returns the .ccs paths to install into the Stage0 root and the warnings to show (one per package
    with maintainer scripts, which were not run), the fixups package (the links and files
    Debian's maintainer scripts would have made; stages/seed/fixups.toml) last unless *fixups* is
    False. on_event(phase, done, total, name) with phase "download" or "import".
    """
    debs = download_lock(
        lock,
        cache,
        state_dir=state_dir,
        etc_apt=etc_apt,
        on_done=(lambda d, t, n: on_event("download", d, t, n)) if on_event else None,
    )
    imported = import_debs(
        debs,
        output_dir,
        signing_key,
        jobs=jobs,
        on_done=(lambda d, t, n: on_event("import", d, t, n)) if on_event else None,
    )
    paths = [i.path for i in imported]
    if fixups is not False:
        fixup_file = seed_dir() / "fixups.toml" if fixups is True else Path(fixups)
        paths.append(build_fixups_package(load_fixups(fixup_file), output_dir, signing_key))
    return paths, [i.warning for i in imported if i.warning]


def relation_closure(
    controls: Mapping[str, DebControl], roots: Sequence[str], omit: Collection[str]
) -> list[str]:
    """The names of *roots* and everything they Depend or Pre-Depend on among *controls* (a lock's
    packages by name), without the *omit* names and what only they pull in. A virtual name is
    met by the packages that Provide it; of alternatives, the first the lock holds. Sorted."""
    providers: dict[str, list[str]] = {}
    for name, control in sorted(controls.items()):
        providers.setdefault(name, []).append(name)
        for group in relations.parse_relations(control.get("Provides")):
            for rel in group:
                providers.setdefault(rel.name, []).append(name)
    missing = [r for r in roots if r not in providers]
    if missing:
        raise SeedError(
            f"the lock holds no package {', '.join(missing)}",
            hint="add it to the lock's packages and run 'conary seed lock' again",
        )
    seen: set[str] = set()
    queue = [providers[r][0] for r in roots if r not in omit]
    while queue:
        name = queue.pop()
        if name in seen or name in omit:
            continue
        seen.add(name)
        control = controls[name]
        for field_name in ("Pre-Depends", "Depends"):
            for group in relations.parse_relations(control.get(field_name)):
                if any(rel.name in omit for rel in group):
                    continue
                met = next((providers[rel.name][0] for rel in group if rel.name in providers), None)
                if met is not None:
                    queue.append(met)
    return sorted(seen)


def import_lock_packages(
    lock: SeedLock,
    cache: SourceCache,
    output_dir: str | os.PathLike[str],
    signing_key: SigningKey | str | os.PathLike[str],
    *,
    packages: Sequence[str],
    omit: Collection[str] = (),
    state_dir: Path,
    etc_apt: Path = Path("/etc/apt"),
    jobs: int | None = None,
    on_event: Callable[[str, int, int, str], None] | None = None,
) -> tuple[list[Path], list[str]]:
    """Download *lock*'s .debs (when not cached) and convert the closure of *packages* without the
    *omit* names, whose requirements are left out of the converted packages (see import_deb).
    Returns the .ccs paths and the warnings to show, as import_seed does."""
    debs = download_lock(
        lock,
        cache,
        state_dir=state_dir,
        etc_apt=etc_apt,
        on_done=(lambda d, t, n: on_event("download", d, t, n)) if on_event else None,
    )
    by_name = {DebFile(path).control().package: path for path in debs}
    controls = {name: DebFile(path).control() for name, path in by_name.items()}
    chosen = relation_closure(controls, packages, omit)
    imported = import_debs(
        [by_name[name] for name in chosen],
        output_dir,
        signing_key,
        jobs=jobs,
        omit=sorted(omit),
        on_done=(lambda d, t, n: on_event("import", d, t, n)) if on_event else None,
    )
    return [i.path for i in imported], [i.warning for i in imported if i.warning]
