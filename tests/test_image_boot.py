"""The minimal image booted in QEMU (TCG) on aarch64 and riscv64 until its init's marker, and bad
disks given to `image boot`.

aarch64 boots through AAVMF, riscv64 through OpenSBI and U-Boot's UEFI; each firmware starts
systemd-boot from the disk's ESP, which starts the kernel of the BLS entry. riscv64 is also booted
the direct way (OpenSBI starting the ESP's kernel), the fallback for machines without U-Boot or a
riscv64 systemd-boot. x86_64 boots through OVMF in tests/test_bootstrap_minimal.py.

The disks are the bootstraps' own: `conary bootstrap image` of the minimal profile for each target
(tests/conftest.py), with the kernel, busybox and init its Base stage built from Debian's sources.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from conary.image import boot_image, inspect_image
from conary.targets import load_target

# TCG on a shared 2-core machine: generous, and only reached when a boot hangs.
BOOT_TIMEOUT = "600"

pytestmark = [pytest.mark.slow, pytest.mark.network]


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


def test_aarch64_boots_through_aavmf(minimal_cross, cli, tmp_path: Path) -> None:
    disk = minimal_cross("aarch64")["disk"]
    log = tmp_path / "boot.log"
    result = _boot(cli, disk, "aarch64", log)
    assert result.code == 0, result.err
    assert result.out.strip() == "conary: booted aarch64"
    console = log.read_text(errors="replace")
    assert "Linux version 6.12.38" in console and "EFI stub" in console


def test_riscv64_boots_through_opensbi_u_boot_and_systemd_boot(minimal_cross, cli, tmp_path: Path) -> None:
    disk = minimal_cross("riscv64")["disk"]
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


def test_riscv64_boots_the_disks_kernel_directly(minimal_cross, tmp_path: Path) -> None:
    disk = minimal_cross("riscv64")["disk"]
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


def test_corrupt_disk_fails_with_one_line_and_the_logs_tail(minimal_x86_64, cli, tmp_path: Path) -> None:
    disk = tmp_path / "corrupt.raw"
    shutil.copyfile(minimal_x86_64["disk"], disk)
    esp = next(p for p in inspect_image(disk).partitions if p.label == "esp")
    with open(disk, "r+b") as f:  # the ESP's FAT: boot sector, FATs and root directory
        f.seek(esp.start)
        f.write(b"\xde\xad\xbe\xef" * (2 * 1024**2 // 4))
    log = tmp_path / "boot.log"
    _fails_with_one_line_and_the_tail(_boot(cli, disk, "x86_64", log, timeout="300"), log)


def test_truncated_disk_fails_with_one_line_and_the_logs_tail(minimal_x86_64, cli, tmp_path: Path) -> None:
    disk = tmp_path / "truncated.raw"
    shutil.copyfile(minimal_x86_64["disk"], disk)
    with open(disk, "r+b") as f:
        f.truncate(3 * 1024**2)  # the GPT and the ESP's first 2 MiB are left
    log = tmp_path / "boot.log"
    _fails_with_one_line_and_the_tail(_boot(cli, disk, "x86_64", log, timeout="300"), log)
