"""The minimal image booted in QEMU (TCG) on x86_64, aarch64 and riscv64, until its init's marker.

x86_64 boots through OVMF, aarch64 through AAVMF, riscv64 through OpenSBI and U-Boot's UEFI; each
firmware starts systemd-boot from the disk's ESP, which starts the kernel of the BLS entry. riscv64 is
also booted the direct way (OpenSBI starting the ESP's kernel), the fallback for machines without
U-Boot or a riscv64 systemd-boot.

Real kernels (recipes/linux.recipe.toml from Debian's orig tarball, cross-compiled with the target
macros), the real minimal-init recipe, and busybox: Debian's busybox-static binary packed into a CCS
for x86_64, tests/data/image/busybox.recipe.toml cross-compiled for aarch64 and riscv64 (the
bootstrap's static busybox replaces both later; see tests/helpers_image.py). Each architecture's
packages are cooked once per run and each disk is built once per run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conary.image import boot_image, build_image, inspect_image, load_definition
from conary.targets import load_target
from helpers_image import minimal_packages

REPO = Path(__file__).resolve().parent.parent
MINIMAL = REPO / "images" / "minimal.image.toml"
# TCG on a shared 2-core machine: generous, and only reached when a boot hangs.
BOOT_TIMEOUT = "600"

pytestmark = [pytest.mark.slow, pytest.mark.network]


@pytest.fixture(scope="session")
def minimal_disk(
    tmp_path_factory: pytest.TempPathFactory, shared_source_cache: Path
) -> Callable[[str], Path]:
    """The minimal image's raw disk for an architecture, built once per run."""
    disks: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in disks:
            dist, pub = minimal_packages(arch, shared_source_cache)
            out = tmp_path_factory.mktemp(f"disk-{arch}") / "minimal.raw"
            build_image(load_definition(MINIMAL), load_target(arch), out, packages=[dist], trust=[pub])
            disks[arch] = out
        return disks[arch]

    return get


def _boot(cli, disk: Path, arch: str, log: Path, timeout: str = BOOT_TIMEOUT):
    return cli(
        "image",
        "boot",
        disk,
        "--arch",
        arch,
        "--expect",
        f"conary: booted {arch}",
        "--timeout",
        timeout,
        "--log",
        log,
    )


def test_x86_64_boots_through_ovmf_and_systemd_boot(minimal_disk, cli, tmp_path: Path) -> None:
    disk = minimal_disk("x86_64")
    log = tmp_path / "boot.log"
    result = _boot(cli, disk, "x86_64", log)
    assert result.code == 0, result.err
    assert result.out.strip() == "conary: booted x86_64"
    console = log.read_text(errors="replace")
    assert "Linux version 6.12.38" in console
    # The kernel was started by systemd-boot from the BLS entry: its command line is the entry's.
    options = inspect_image(disk).boot_entry["options"]
    assert f"Command line: {options}" in console
    assert sorted(p.name for p in inspect_image(disk).packages) == ["busybox", "linux", "minimal-init"]


def test_aarch64_boots_through_aavmf(minimal_disk, cli, tmp_path: Path) -> None:
    disk = minimal_disk("aarch64")
    log = tmp_path / "boot.log"
    result = _boot(cli, disk, "aarch64", log)
    assert result.code == 0, result.err
    assert result.out.strip() == "conary: booted aarch64"
    console = log.read_text(errors="replace")
    assert "Linux version 6.12.38" in console and "EFI stub" in console


def test_riscv64_boots_through_opensbi_u_boot_and_systemd_boot(minimal_disk, cli, tmp_path: Path) -> None:
    disk = minimal_disk("riscv64")
    log = tmp_path / "boot.log"
    result = _boot(cli, disk, "riscv64", log)
    assert result.code == 0, result.err
    assert result.out.strip() == "conary: booted riscv64"
    console = log.read_text(errors="replace")
    assert "OpenSBI" in console and "U-Boot " in console
    # U-Boot started systemd-boot from the removable-media path, which started the kernel's EFI stub
    # with the BLS entry's command line.
    assert "efi/boot/bootriscv64.efi" in console and "EFI stub" in console
    assert "Linux version 6.12.38" in console
    options = inspect_image(disk).boot_entry["options"]
    assert f"Kernel command line: {options}" in console


def test_riscv64_boots_the_disks_kernel_directly(minimal_disk, tmp_path: Path) -> None:
    disk = minimal_disk("riscv64")
    target = load_target("riscv64")
    direct = replace(target, qemu=replace(target.qemu, firmware="direct-kernel"))
    log = tmp_path / "boot.log"
    result = boot_image(disk, direct, expect="conary: booted riscv64", timeout=float(BOOT_TIMEOUT), log=log)
    assert result.line == "conary: booted riscv64"
    console = log.read_text(errors="replace")
    # OpenSBI jumped straight into the ESP's kernel: no U-Boot, no EFI stub, the entry's options.
    assert "U-Boot " not in console and "EFI stub" not in console
    assert "Linux version 6.12.38" in console
    assert f"Kernel command line: {inspect_image(disk).boot_entry['options']}" in console


def _fails_with_one_line_and_the_tail(result, log: Path) -> None:
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("conary: booting ")  # the one progress line
    assert lines[1].startswith("--- last ") and f"lines of {log} ---" in lines[1]
    assert lines[-2] == "---"
    assert lines[-1].startswith("conary: error: ") and "'conary: booted x86_64' did not appear" in lines[-1]
    assert "Traceback" not in result.err


def test_corrupt_disk_fails_with_one_line_and_the_logs_tail(minimal_disk, cli, tmp_path: Path) -> None:
    disk = tmp_path / "corrupt.raw"
    shutil.copyfile(minimal_disk("x86_64"), disk)
    esp = next(p for p in inspect_image(disk).partitions if p.label == "esp")
    with open(disk, "r+b") as f:  # the ESP's FAT: boot sector, FATs and root directory
        f.seek(esp.start)
        f.write(b"\xde\xad\xbe\xef" * (2 * 1024**2 // 4))
    log = tmp_path / "boot.log"
    _fails_with_one_line_and_the_tail(_boot(cli, disk, "x86_64", log, timeout="300"), log)


def test_truncated_disk_fails_with_one_line_and_the_logs_tail(minimal_disk, cli, tmp_path: Path) -> None:
    disk = tmp_path / "truncated.raw"
    shutil.copyfile(minimal_disk("x86_64"), disk)
    with open(disk, "r+b") as f:
        f.truncate(3 * 1024**2)  # the GPT and the ESP's first 2 MiB are left
    log = tmp_path / "boot.log"
    _fails_with_one_line_and_the_tail(_boot(cli, disk, "x86_64", log, timeout="300"), log)
