"""Image build against bare systemd-repart + mkfs on the same tree, and the edit-to-VM loop.

1. Build: an installed root of about 200 MB (a ~5,000-file package installed by the runtime, plus a
   stand-in kernel) made into a disk by ``conary image build --root`` (ESP with mtools, ext4 made in
   a user namespace with its times fixed, systemd-repart --offline=yes, fsync and rename), against
   the baseline in the same run: systemd-repart --offline=yes formatting both partitions itself
   (``Format=vfat``/``Format=ext4`` with ``CopyFiles=``) from the same trees, run directly. Runs are
   alternated; medians after a warm-up; the ratio is Conary / baseline (goal: at most 2x).
2. Edit-to-VM: in a bootstrap work dir whose stages are all done (--work; by default the x86_64
   one the tests keep under .cache/test-bootstrap), the image definition's command line is changed
   and the time from ``conary bootstrap image`` (which rebuilds only the disk: every package is a
   checkpoint) to the marker printed by ``conary image boot`` is measured, split into build and
   boot (goal: under 15 s; mkosi's cached build-and-boot loop is about 40 s here, without a boot).
   The definition is restored afterwards.

    python bench/image.py [--files 5000] [--mb 200] [--runs 5] [--boots 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from conary.ccs import PackageMeta, build_package, generate_keypair, load_public_key
from conary.image.tools import find_repart
from conary.runtime import install_packages
from install import make_tree

REPO = Path(__file__).resolve().parent.parent
CONARY = [sys.executable, "-m", "conary"]
DEFINITION = 'name = "bench"\nformat = "raw"\nfilesystem = "ext4"\nsize = "{size}"\ncmdline = "{cmdline}"\n'
BASELINE_ESP = "[Partition]\nType=esp\nFormat=vfat\nCopyFiles={esp}:/\nSizeMinBytes=64M\nSizeMaxBytes=64M\n"
BASELINE_ROOT = (
    "[Partition]\nType=root-x86-64\nFormat=ext4\nCopyFiles={root}:/\n"
    "SizeMinBytes={size}\nSizeMaxBytes={size}\n"
)


def timed(argv: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def installed_root(base: Path, files: int, mb: int) -> tuple[Path, int]:
    tree = base / "tree"
    size = make_tree(tree, files, mb)
    (tree / "boot").mkdir()
    (tree / "boot" / "vmlinuz-0").write_bytes(b"stand-in kernel\n" * 4096)
    key, pub = generate_keypair(base / "key")
    pkg = build_package(
        tree, PackageMeta("payload", "1", "1", "x86_64"), output_dir=base / "dist", signing_key=key
    )
    shutil.rmtree(tree)
    root = base / "root"
    install_packages(root, [pkg], trusted_keys=[load_public_key(pub)])
    return root, size


def bench_build(base: Path, files: int, mb: int, runs: int) -> None:
    root, payload = installed_root(base, files, mb)
    size = f"{(mb * 3 // 2 + 64)}M"
    definition = base / "bench.image.toml"
    definition.write_text(DEFINITION.format(size=size, cmdline=""))
    repart = find_repart()
    esp = base / "esp"
    (esp / "EFI" / "BOOT").mkdir(parents=True)
    shutil.copy(root / "boot" / "vmlinuz-0", esp / "vmlinuz-0")
    shutil.copy("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", esp / "EFI" / "BOOT" / "BOOTX64.EFI")
    defs = base / "repart.d"
    defs.mkdir()
    (defs / "00-esp.conf").write_text(BASELINE_ESP.format(esp=esp))
    (defs / "10-root.conf").write_text(BASELINE_ROOT.format(root=root, size=size))
    env = {**os.environ, **repart.env, "SOURCE_DATE_EPOCH": "0"}

    def conary() -> float:
        return timed(
            [*CONARY, "image", "build", str(definition), "--root", str(root), "-o", str(base / "c.raw")]
        )

    def bare() -> float:
        (base / "b.raw").unlink(missing_ok=True)
        return timed(
            [
                str(repart.path),
                "--offline=yes",
                "--empty=create",
                "--size=auto",
                "--dry-run=no",
                "--no-pager",
                f"--definitions={defs}",
                str(base / "b.raw"),
            ],
            env=env,
        )

    conary(), bare()  # warm-up
    a, b = [], []
    for _ in range(runs):
        a.append(conary())
        b.append(bare())
    ca, cb = statistics.median(a), statistics.median(b)
    print(
        f"image build of an installed root: {payload / 1e6:.0f} MB payload, {files} files, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(f"  conary image build --root   {ca:7.2f} s  (disk {(base / 'c.raw').stat().st_size / 1e6:.0f} MB)")
    print(f"  systemd-repart + mkfs       {cb:7.2f} s  (disk {(base / 'b.raw').stat().st_size / 1e6:.0f} MB)")
    print(f"  ratio conary / bare: {ca / cb:.2f}x (goal: at most 2x)")


def image_definition(work: Path) -> Path:
    """The image definition file the work dir's Image stage builds from."""
    from conary.bootstrap import load_config, load_profile

    profile = load_profile(load_config(work).profile)
    stage = next(s for s in profile.stages if s.image is not None)
    return Path(stage.image)


def bench_edit_to_vm(work: Path, boots: int) -> None:
    if not (work / "bootstrap.toml").is_file():
        print(f"edit-to-VM: skipped: {work} is not a bootstrap work dir (run the tests, or pass --work)")
        return
    definition = image_definition(work)
    original = definition.read_text()
    arch = tomllib.loads((work / "bootstrap.toml").read_text())["target"]
    times = []
    try:
        for i in range(boots + 1):
            definition.write_text(original.replace('cmdline = "', f'cmdline = "conary.edit={i} ', 1))
            start = time.perf_counter()
            run = subprocess.run(
                [*CONARY, "bootstrap", "image", "--work", str(work)],
                check=True,
                capture_output=True,
                text=True,
            )
            built = time.perf_counter() - start
            disk = run.stdout.strip().splitlines()[-1]
            subprocess.run(
                [*CONARY, "image", "boot", disk, "--arch", arch, "--expect", f"conary: booted {arch}"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            total = time.perf_counter() - start
            if i:  # the first run is the warm-up
                times.append((built, total))
    finally:
        definition.write_text(original)
    built = statistics.median(t[0] for t in times)
    total = statistics.median(t[1] for t in times)
    print(f"edit-to-VM ({arch}, definition changed, every package a checkpoint), median of {boots}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  bootstrap image {built:.2f} s + boot to marker {total - built:.2f} s = {total:.2f} s"
          "  (goal: under 15 s)")  # fmt: skip
    print(f"  ratio to mkosi's cached loop here (about 40 s, without a boot): {total / 40:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / ".cache" / "test-bootstrap" / "x86_64" / "work",
        help="a bootstrap work dir with every stage done (default: the tests' x86_64 one)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(
        prefix="bench-image-", dir=REPO / ".cache" if (REPO / ".cache").is_dir() else None
    ) as tmp:
        bench_build(Path(tmp), args.files, args.mb, args.runs)
        bench_edit_to_vm(args.work, args.boots)


if __name__ == "__main__":
    main()
