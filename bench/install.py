"""Install and remove a ~200 MB, ~5,000-file package: Conary against dpkg, in fresh roots.

Baselines, measured in the same run and alternated with Conary's runs (medians after a warm-up):
- ``dpkg --root R -i`` of a .deb made by ``dpkg-deb -b -Zzstd`` from the same tree, in dpkg's safe
  mode (``--refuse-unsafe-io``: its own default, per-file fsync) and, for reference, with
  ``--force-unsafe-io`` (what /etc/dpkg/dpkg.cfg.d sets on this machine);
- ``dpkg --root R -r`` for removal.
Conary is timed as the real command (``conary --root R install|remove|system state rollback``, a
subprocess like dpkg) and the ratios are Conary / dpkg. Rollback of the install (to state 0) is
compared with the install itself.

    python bench/install.py [--files 5000] [--mb 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conary.ccs import PackageMeta, build_package, generate_keypair, load_public_key
from conary.fsutil import require_tool

CONARY = [sys.executable, "-m", "conary"]


def make_tree(tree: Path, files: int, total_mb: int, seed: int = 7) -> int:
    """A deterministic tree: nested dirs, sizes from tiny to several MB, half compressible content."""
    rnd = random.Random(seed)
    sizes = [int(rnd.lognormvariate(8.5, 1.6)) + 1 for _ in range(files)]
    scale = total_mb * 1_000_000 / sum(sizes)
    sizes = [max(1, int(s * scale)) for s in sizes]
    text = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog\n".encode() for i in range(2000))
    total = 0
    for i, size in enumerate(sizes):
        rel = f"usr/lib/bench/d{i % 40:02d}/s{(i // 40) % 8}/file{i:05d}.bin"
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        half = size // 2
        body = rnd.randbytes(half) + (text * (size // len(text) + 1))[: size - half]
        path.write_bytes(body)
        path.chmod(0o755 if i % 10 == 0 else 0o644)
        total += size
    return total


def make_deb(tree: Path, out: Path) -> Path:
    staging = out / "debroot"
    shutil.copytree(tree, staging, symlinks=True)
    (staging / "DEBIAN").mkdir()
    (staging / "DEBIAN/control").write_text(
        "Package: benchpkg\nVersion: 1.0-1\nArchitecture: all\nMaintainer: bench <bench@localhost>\n"
        "Description: benchmark payload\n"
    )
    deb = out / "benchpkg.deb"
    subprocess.run(
        ["dpkg-deb", "-Zzstd", "-z3", "-b", str(staging), str(deb)], check=True, stdout=subprocess.DEVNULL
    )
    shutil.rmtree(staging)
    return deb


def fresh_dpkg_root(base: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="dpkg-", dir=base))
    admin = root / "var/lib/dpkg"
    for sub in ("updates", "info", "triggers"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").touch()
    (admin / "available").touch()
    return root


def fresh_conary_root(base: Path, pub: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="conary-", dir=base))
    subprocess.run([*CONARY, "--root", str(root), "system", "init"], check=True, stdout=subprocess.DEVNULL)
    key = load_public_key(pub)
    (root / "etc/conary/keys").mkdir(parents=True)
    (root / "etc/conary/keys" / f"{key.key_id}.pub").write_text(key.to_text())
    return root


def timed(argv: list[str]) -> float:
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr}")
    return elapsed


def dpkg(root: Path, *args: str, safe: bool) -> list[str]:
    io = "--refuse-unsafe-io" if safe else "--force-unsafe-io"
    return ["dpkg", f"--root={root}", io, "--log=/dev/null", "--no-triggers", *args]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", default="/var/tmp")
    args = parser.parse_args()
    require_tool("dpkg-deb", "dpkg", "build the baseline .deb")

    work = Path(tempfile.mkdtemp(prefix="conary-bench-", dir=args.workdir))
    try:
        tree = work / "tree"
        size = make_tree(tree, args.files, args.mb)
        secret, pub = generate_keypair(work / "bench.key")
        ccs = build_package(
            tree, PackageMeta("benchpkg", "1.0"), output_dir=work, signing_key=secret, split_debug=False
        )
        deb = make_deb(tree, work)
        print(
            f"payload: {args.files} files, {size / 1e6:.0f} MB; .ccs {ccs.stat().st_size / 1e6:.0f} MB, "
            f".deb {deb.stat().st_size / 1e6:.0f} MB (zstd -3)"
        )
        print(f"load average before: {_load()}")
        roots = work / "roots"
        roots.mkdir()
        results: dict[str, list[float]] = {
            k: []
            for k in (
                "conary install",
                "conary remove",
                "conary rollback",
                "dpkg install safe",
                "dpkg install unsafe",
                "dpkg remove",
            )
        }
        for run in range(args.runs + 1):  # run 0 is the warm-up
            sample: dict[str, float] = {}
            # Alternate: conary, dpkg safe, dpkg unsafe (removal after each install).
            root = fresh_conary_root(roots, pub)
            sample["conary install"] = timed([*CONARY, "--root", str(root), "install", str(ccs)])
            sample["conary remove"] = timed([*CONARY, "--root", str(root), "remove", "benchpkg"])
            shutil.rmtree(root)
            root = fresh_dpkg_root(roots)
            sample["dpkg install safe"] = timed(dpkg(root, "-i", str(deb), safe=True))
            sample["dpkg remove"] = timed(dpkg(root, "-r", "benchpkg", safe=True))
            shutil.rmtree(root)
            root = fresh_conary_root(roots, pub)
            subprocess.run(
                [*CONARY, "--root", str(root), "install", str(ccs)], check=True, stdout=subprocess.DEVNULL
            )
            sample["conary rollback"] = timed(
                [*CONARY, "--root", str(root), "system", "state", "rollback", "0"]
            )
            shutil.rmtree(root)
            root = fresh_dpkg_root(roots)
            sample["dpkg install unsafe"] = timed(dpkg(root, "-i", str(deb), safe=False))
            shutil.rmtree(root)
            if run:
                for key, value in sample.items():
                    results[key].append(value)
            print(
                f"run {run}{' (warm-up)' if not run else ''}: "
                + ", ".join(f"{k} {v:.2f}s" for k, v in sample.items()),
                flush=True,
            )
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"load average after: {_load()}")
        print("\nmedians of", args.runs, "runs:")
        for key, value in med.items():
            print(f"  {key:<22} {value:6.2f} s")
        print("ratios (below 1.0: Conary faster):")
        ratios = (
            ("install: conary / dpkg safe (--refuse-unsafe-io)", "conary install", "dpkg install safe"),
            ("install: conary / dpkg unsafe (--force-unsafe-io)", "conary install", "dpkg install unsafe"),
            ("remove: conary / dpkg -r", "conary remove", "dpkg remove"),
            ("rollback of the install / the install", "conary rollback", "conary install"),
        )
        for label, a, b in ratios:
            print(f"  {label:<52} {med[a] / med[b]:5.2f}   ({med[a]:.2f} s / {med[b]:.2f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
