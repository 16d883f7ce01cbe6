"""Packing speed of `conary ccs build` against `tar | zstd -3 -T0`, and chunk sharing across versions.

    python bench/ccs_pack.py [--size-mb 500] [--rounds 3] [--work DIR] [--level N] [--no-split-debug]

Builds a tree of about --size-mb from the host's /usr/lib (real libraries, Python modules, ...),
then alternates A B A B: A = build_package() of the tree (signing and the fsync'd atomic write
included; debug info splitting on unless --no-split-debug, which is the fairer match since tar
strips nothing), B = `tar -cf - TREE | zstd -3 -T0 | cat > /dev/null` (zstd multi-threaded on all
cores; cat: GNU tar skips reading when its output is /dev/null). One warm-up round of each is
discarded. Prints medians, the ratios and the load average (other work on the machine skews both).

Then packs version B of the tree (every 7th file of 64 KiB or more gets 100 bytes inserted in the
middle, every 11th gets 4 KiB appended) and reports how many of B's chunks A already has.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conary.ccs import PackageMeta, build_package, open_package
from conary.ccs.build import DEFAULT_COMPRESSION_LEVEL
from conary.ccs.keys import new_signing_key

SOURCES = [
    "python3.11",
    "python3",
    "git-core",
    "postgresql",
    "file",
    "systemd",
    "apt",
    "gcc",
    "x86_64-linux-gnu",
    "llvm-14",
]


def make_tree(dest: Path, budget: int) -> tuple[int, int]:
    total = files = 0
    for name in SOURCES:
        src = Path("/usr/lib") / name
        if not src.is_dir():
            continue
        for dirpath, dirs, names in os.walk(src):
            dirs.sort()
            for fname in sorted(names):
                path = os.path.join(dirpath, fname)
                rel = os.path.relpath(path, "/usr/lib")
                target = dest / "usr/lib" / rel
                if os.path.islink(path):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(os.readlink(path), target)
                    continue
                if not os.path.isfile(path):
                    continue
                size = os.path.getsize(path)
                if size > 40 << 20 or total + size > budget or not os.access(path, os.R_OK):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                os.chmod(target, os.stat(path).st_mode & 0o7777)
                total += size
                files += 1
    return total, files


def make_version_b(tree: Path, dest: Path) -> None:
    shutil.copytree(tree, dest, symlinks=True)
    regular = sorted(p for p in dest.rglob("*") if p.is_file() and not p.is_symlink())
    for i, path in enumerate(regular):
        size = path.stat().st_size
        if i % 7 == 0 and size >= 64 << 10:
            data = path.read_bytes()
            middle = len(data) // 2
            path.write_bytes(data[:middle] + b"v2-patch" * 12 + b"ccs!" + data[middle:])
        elif i % 11 == 0:
            with open(path, "ab") as handle:
                handle.write(os.urandom(4096))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def time_conary(tree: Path, out: Path, key, level: int, split_debug: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one build."""
    shutil.rmtree(out, ignore_errors=True)
    cpu = _cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    build_package(
        tree,
        PackageMeta("bench", "1"),
        output_dir=out,
        signing_key=key,
        source_date_epoch=1,
        compression_level=level,
        split_debug=split_debug,
    )
    return time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu


def time_tar_zstd(tree: Path) -> tuple[float, float]:
    cpu = _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        f"tar -cf - -C '{tree.parent}' '{tree.name}' | zstd -3 -T0 -q | cat > /dev/null",
        shell=True,
        check=True,
    )
    return time.perf_counter() - start, _cpu(resource.RUSAGE_CHILDREN) - cpu


def chunk_sizes(path: Path) -> dict[str, int]:
    with open_package(path) as pkg:
        return {oid: pkg.object_size(oid) for oid in pkg.object_ids}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--level", type=int, default=DEFAULT_COMPRESSION_LEVEL)
    ap.add_argument("--no-split-debug", dest="split_debug", action="store_false")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ccs-bench-", dir="/var/tmp"))
    tree = work / "tree"
    if not tree.exists():
        total, files = make_tree(tree, args.size_mb << 20)
    else:
        total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
        files = sum(1 for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    mb = total / 1e6
    print(
        f"tree: {mb:.0f} MB in {files} files ({tree}), {os.cpu_count()} cores, zstd level {args.level}, "
        f"debug info split {'on' if args.split_debug else 'off'}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    key = new_signing_key()
    out = work / "out"
    time_conary(tree, out, key, args.level, args.split_debug)  # warm-up (page cache, imports)
    time_tar_zstd(tree)
    conary_runs, tar_runs = [], []
    for _ in range(args.rounds):
        conary_runs.append(time_conary(tree, out, key, args.level, args.split_debug))
        tar_runs.append(time_tar_zstd(tree))
    c = statistics.median(r[0] for r in conary_runs)
    t = statistics.median(r[0] for r in tar_runs)
    c_cpu = statistics.median(r[1] for r in conary_runs)
    t_cpu = statistics.median(r[1] for r in tar_runs)
    pkg = next(out.glob("*.ccs"))
    runs_c = [round(r[0], 2) for r in conary_runs]
    runs_t = [round(r[0], 2) for r in tar_runs]
    print(f"conary ccs build      : {mb / c:7.0f} MB/s  (median {c:.2f} s of {runs_c}; CPU {c_cpu:.2f} s)")
    print(f"tar|zstd -3 -T0|cat   : {mb / t:7.0f} MB/s  (median {t:.2f} s of {runs_t}; CPU {t_cpu:.2f} s)")
    print(f"CPU ratio             : {t_cpu / c_cpu:7.2f}  (baseline CPU / conary CPU; load-independent)")
    print(f"ratio conary/baseline : {t / c:7.2f}  (>= 1.0: conary at least as fast)")
    size = pkg.stat().st_size
    print(f"package size          : {size / 1e6:.0f} MB ({size / total:.1%} of the tree)")
    print(f"load average after    : {os.getloadavg()[0]:.2f}")

    version_b = work / "tree-b"
    if not version_b.exists():
        make_version_b(tree, version_b)
    out_b = work / "out-b"
    shutil.rmtree(out_b, ignore_errors=True)
    pkg_b = build_package(
        version_b, PackageMeta("bench", "2"), output_dir=out_b, signing_key=key, source_date_epoch=1
    )
    a, b = chunk_sizes(pkg), chunk_sizes(pkg_b)
    shared = set(a) & set(b)
    print(
        f"version B shares {len(shared) / len(b):.1%} of its chunks with A "
        f"({sum(b[i] for i in shared) / sum(b.values()):.1%} of its bytes; {len(b)} chunks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
