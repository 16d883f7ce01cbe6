"""Seed download, import and install times against dpkg doing the same job.

    python bench/seed_import.py [--lock stages/seed/x86_64.lock] [--rounds 3] [--work DIR]
                                [--cache DIR]

First downloads the lock's .debs into the source cache (timed once; a second run finds them
cached). Then alternates, round after round:

- import: conary.debian.seed.import_seed (every .deb from the cache, one package per process on
  all cores, and the seed fixups package),
  against the floor `dpkg-deb -x` of every .deb into one tree, run with the same parallelism
  (`xargs -P`); dpkg-deb only unpacks, while import also hashes, chunks, compresses and signs;
- install: conary.runtime.install_packages of the converted packages into a fresh root (crash-safe:
  journaled, fsync'd; dependencies checked), against the same floor, which is what any installer
  must at least do. (`dpkg --root --unpack` is not a usable baseline here: it runs the packages'
  preinst scripts, outside a chroot unless dpkg itself is in the root.)

One warm-up round of each is discarded. Prints medians, the ratio baseline/conary (1.0 or more
means conary is as fast or faster), CPU seconds and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from conary.ccs.keys import new_signing_key
from conary.debian.lock import read_lock
from conary.debian.seed import download_lock, import_seed, lock_path
from conary.fetch import SourceCache, default_cache_dir
from conary.runtime import install_packages


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    start, start_cpu = time.perf_counter(), cpu()
    fn()
    return time.perf_counter() - start, cpu() - start_cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lock", type=Path, default=lock_path("x86_64"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    jobs = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="seed-bench-", dir=args.work))
    lock = read_lock(args.lock)
    cache = SourceCache(args.cache)
    state = args.cache / ".debian-apt-deb"
    missing = sum(1 for d in lock.debs if cache.path_for(f"sha256:{d.sha256}") is None)
    wall, _ = timed(lambda: download_lock(lock, cache, state_dir=state))
    debs = download_lock(lock, cache, state_dir=state)
    print(
        f"{len(lock.debs)} packages, {lock.total_size / 1e6:.1f} MB; "
        f"download of {missing} missing: {wall:.2f} s"
    )
    key = new_signing_key()
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        for round_ in range(args.rounds + 1):
            out = work / f"ccs{round_}"
            packages: list[Path] = []

            def conary_import(out: Path = out, packages: list[Path] = packages) -> None:
                packages[:] = import_seed(lock, cache, out, key, state_dir=state, jobs=jobs)[0]

            tree = work / f"tree{round_}"
            tree.mkdir()

            def dpkg_x(tree: Path = tree) -> None:
                subprocess.run(
                    ["xargs", "-0", "-P", str(jobs), "-I{}", "dpkg-deb", "-x", "{}", str(tree)],
                    input=b"\0".join(str(d).encode() for d in debs),
                    check=True,
                )

            root = work / f"root{round_}"
            root.mkdir()

            def conary_install(root: Path = root, packages: list[Path] = packages) -> None:
                install_packages(root, packages, allow_untrusted=True)

            for name, fn in (("import", conary_import), ("dpkg-deb -x", dpkg_x), ("install", conary_install)):
                figure = timed(fn)
                if round_:
                    results.setdefault(name, []).append(figure)
            for path in (out, tree, root):
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {
        name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for name, r in results.items()
    }
    for name, (wall, cpu_s) in median.items():
        print(f"{name:<14} {wall:7.2f} s wall  {cpu_s:7.2f} s CPU")
    print(f"import  ratio dpkg-deb -x / conary: {median['dpkg-deb -x'][0] / median['import'][0]:.2f}")
    print(f"install ratio dpkg-deb -x / conary: {median['dpkg-deb -x'][0] / median['install'][0]:.2f}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
