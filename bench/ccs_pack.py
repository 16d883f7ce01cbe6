"""Packing speed of `conary ccs build` against `tar | zstd -N -T0` at the same zstd level, and chunk
sharing across versions.

    python bench/ccs_pack.py [--size-mb 500] [--rounds 3] [--work DIR] [--levels N,M]
                             [--no-split-debug] [--few-files]

A ratio between two compressors is only fair at equal work: zstd level 1 against level 3 measures the
level, not the code. So each comparison runs Conary and the baseline at the same level N, for every
level of --levels (default: Conary's default level, then 3), and prints the output sizes side by side.

Builds a tree of about --size-mb from the host's /usr/lib (real libraries, Python modules, ...),
then alternates, round after round, conary and three forms of the baseline (zstd multi-threaded
on all cores in each):

- conary: build_package() of the tree at level N, into a .ccs on disk, signed and fsync'd (debug
  info splitting on unless --no-split-debug, which is the fairer match since tar strips nothing);
- "same job": `tar -cf - TREE | zstd -N -T0 -o OUT.tar.zst && sync OUT.tar.zst`, an archive on
  the same disk, flushed to it as conary's is;
- "file": the same without the flush;
- "no output": `tar -cf - TREE | zstd -N -T0 | cat > /dev/null` (cat: GNU tar skips reading when
  its output is /dev/null), compression only.

One warm-up round of each is discarded. Prints medians, a ratio against each baseline (baseline
time / conary time: 1.0 or more means conary is as fast or faster), CPU seconds (this process and
its children), the sizes of the package and of the baseline archive, and the load average (other
work on the machine skews every figure). With --few-files it then does the same with the tree's
bytes concatenated into 64 files, which shows how much of the difference is a cost per file.

Then packs version B of the tree (every 7th file of 64 KiB or more gets 100 bytes inserted in the
middle, every 11th gets 4 KiB appended) and reports how many of B's chunks A already has.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
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


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (packing workers, tar, zstd)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def time_conary(tree: Path, out: Path, key, level: int, split_debug: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one build."""
    shutil.rmtree(out, ignore_errors=True)
    cpu = _cpu()
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
    return time.perf_counter() - start, _cpu() - cpu


# {level} is the zstd level, the same as conary's in each comparison.
BASELINES = {
    "same job": "tar -cf - -C {parent} {name} | zstd -{level} -T0 -q -o {out} && sync {out}",
    "file": "tar -cf - -C {parent} {name} | zstd -{level} -T0 -q -o {out}",
    "no output": "tar -cf - -C {parent} {name} | zstd -{level} -T0 -q | cat > /dev/null",
}


def time_baseline(command: str, tree: Path, out: Path, level: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, archive bytes or 0 when it writes none) of one baseline run."""
    out.unlink(missing_ok=True)
    line = command.format(
        parent=shlex.quote(str(tree.parent)), name=shlex.quote(tree.name), out=out, level=level
    )
    cpu = _cpu()
    start = time.perf_counter()
    subprocess.run(line, shell=True, check=True)
    elapsed = time.perf_counter() - start
    size = out.stat().st_size if out.exists() else 0
    out.unlink(missing_ok=True)
    return elapsed, _cpu() - cpu, size


def compare(
    tree: Path, work: Path, key, args: argparse.Namespace, total: int, label: str, level: int
) -> Path:
    """Alternate conary and the baselines on *tree*, both at zstd LEVEL; print medians, ratios and
    output sizes; return the package."""
    mb = total / 1e6
    out = work / f"out-{tree.name}-{level}"
    archive = work / "baseline.tar.zst"
    print(f"\nzstd level {level}, conary and baseline alike ({label}):")
    time_conary(tree, out, key, level, args.split_debug)  # warm-up (page cache, imports)
    for command in BASELINES.values():
        time_baseline(command, tree, archive, level)
    conary_runs: list[tuple[float, float]] = []
    baseline_runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in BASELINES}
    for _ in range(args.rounds):
        conary_runs.append(time_conary(tree, out, key, level, args.split_debug))
        for name, command in BASELINES.items():
            baseline_runs[name].append(time_baseline(command, tree, archive, level))
    c = statistics.median(r[0] for r in conary_runs)
    c_cpu = statistics.median(r[1] for r in conary_runs)
    pkg = next(out.glob("*.ccs"))
    runs = [round(r[0], 2) for r in conary_runs]
    print(f"conary ccs build -{level:<2} : {mb / c:5.0f} MB/s  median {c:.2f} s of {runs}, CPU {c_cpu:.2f} s")
    for name, results in baseline_runs.items():
        t = statistics.median(r[0] for r in results)
        t_cpu = statistics.median(r[1] for r in results)
        runs = [round(r[0], 2) for r in results]
        print(
            f"tar|zstd -{level:<2} {name:<9}: {mb / t:5.0f} MB/s  median {t:.2f} s of {runs}, "
            f"CPU {t_cpu:.2f} s  -> ratio {t / c:.2f}"
        )
    size = pkg.stat().st_size
    baseline_size = max(r[2] for r in baseline_runs["file"])
    print(
        f"output size -{level:<2}       : conary {size / 1e6:.1f} MB ({size / total:.1%} of {label}), "
        f"tar|zstd {baseline_size / 1e6:.1f} MB ({baseline_size / total:.1%}); "
        f"conary / tar|zstd {size / baseline_size:.2f}"
    )
    print(f"load average after    : {os.getloadavg()[0]:.2f}")
    return pkg


def _levels(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or any(not 1 <= level <= 22 for level in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: give zstd levels 1-22, separated by commas")
    return list(dict.fromkeys(levels))


def make_few_files(tree: Path, dest: Path, count: int) -> None:
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    dest.mkdir(parents=True)
    per = len(files) // count + 1
    for i in range(count):
        with open(dest / f"part{i:02d}", "wb") as out:
            for path in files[i * per : (i + 1) * per]:
                out.write(path.read_bytes())


def chunk_sizes(path: Path) -> dict[str, int]:
    with open_package(path) as pkg:
        return {oid: pkg.object_size(oid) for oid in pkg.object_ids}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument(
        "--levels",
        type=_levels,
        default=list(dict.fromkeys([DEFAULT_COMPRESSION_LEVEL, 3])),
        metavar="N,M",
        help=f"zstd levels to compare at, conary and baseline alike (default: {DEFAULT_COMPRESSION_LEVEL},3)",
    )
    ap.add_argument("--no-split-debug", dest="split_debug", action="store_false")
    ap.add_argument(
        "--few-files",
        action="store_true",
        help="also pack the same bytes concatenated into 64 files, which isolates the cost per file",
    )
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
        f"tree: {mb:.0f} MB in {files} files ({tree}), {os.cpu_count()} cores, zstd levels "
        f"{', '.join(map(str, args.levels))} (conary's default: {DEFAULT_COMPRESSION_LEVEL}), "
        f"debug info split {'on' if args.split_debug else 'off'}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    key = new_signing_key()
    packages = [compare(tree, work, key, args, total, "the tree", level) for level in args.levels]
    pkg = packages[0]
    if args.few_files:
        # The same bytes in 64 files: what is left of the difference is the cost per file.
        few = work / "tree-few"
        if not few.exists():
            make_few_files(tree, few, 64)
        print(f"\nthe same {mb:.0f} MB in 64 files ({few}):")
        for level in args.levels:
            compare(few, work, key, args, total, "64 files", level)

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
