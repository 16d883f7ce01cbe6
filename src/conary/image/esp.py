"""The EFI system partition, made as a FAT image with mtools and handed to repart with CopyBlocks=.

Building it here rather than letting repart format it keeps it byte-reproducible: mkfs.fat writes no
volume label entry (which would carry the current time), the volume id comes from the image's seed,
files are copied in sorted order, and mtools stamps entries with SOURCE_DATE_EPOCH. It needs neither
root nor a vfat-capable kernel, so it also works where systemd-repart is 252.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conary.errors import ConaryError
from conary.image.definition import ImageDefinition
from conary.image.tools import systemd_boot
from conary.targets import Target

# FAT32 wants at least 65525 clusters: 64 MiB with 512-byte clusters.
ESP_SIZE = 64 * 1024**2
# FAT cannot store dates before 1980; mtools is given this instead of an earlier SOURCE_DATE_EPOCH.
FAT_EPOCH = 315532800


def write_file(path: Path, data: bytes, mode: int, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (epoch, epoch))


def boot_entry_text(definition: ImageDefinition, target: Target, version: str, cmdline: str) -> str:
    return (
        f"title Conary {definition.name} ({target.arch})\n"
        f"version {version}\n"
        f"linux /{definition.name}/vmlinuz-{version}\n"
        f"options {cmdline}\n"
    )


def make_esp_tree(
    esp: Path,
    definition: ImageDefinition,
    target: Target,
    kernel: Path,
    version: str,
    cmdline: str,
    epoch: int,
) -> None:
    """systemd-boot (where this machine has it for the target), loader.conf, one BLS entry, the kernel."""
    boot = systemd_boot(target)
    if boot is not None:
        write_file(esp / "EFI" / "BOOT" / target.image.efi_boot_file, boot.read_bytes(), 0o644, epoch)
    loader = f"default {definition.name}.conf\ntimeout 0\n"
    write_file(esp / "loader" / "loader.conf", loader.encode(), 0o644, epoch)
    entry = boot_entry_text(definition, target, version, cmdline)
    write_file(esp / "loader" / "entries" / f"{definition.name}.conf", entry.encode(), 0o644, epoch)
    write_file(esp / definition.name / f"vmlinuz-{version}", kernel.read_bytes(), 0o644, epoch)


def _mtools(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise ConaryError(
            f"{argv[0]} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}",
            where="image build: ESP",
        )


def make_esp_image(tree: Path, image: Path, volume_id: str, epoch: int, size: int = ESP_SIZE) -> None:
    """A FAT32 image of SIZE bytes holding TREE, its entries created in sorted order."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(max(epoch, FAT_EPOCH)), "MTOOLS_SKIP_CHECK": "1"}
    image.unlink(missing_ok=True)
    mkfs = subprocess.run(
        ["mkfs.fat", "-F", "32", "-s", "1", "-i", volume_id, "-C", str(image), str(size // 1024)],
        capture_output=True,
        text=True,
        env=env,
    )
    if mkfs.returncode != 0:
        raise ConaryError(f"mkfs.fat failed: {mkfs.stderr.strip()}", where="image build: ESP")
    target = f"{image}"
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel = os.path.relpath(dirpath, tree)
        for name in sorted(dirnames):
            _mtools(["mmd", "-i", target, "::" + os.path.normpath(os.path.join("/", rel, name))], env)
        for name in sorted(filenames):
            dest = "::" + os.path.normpath(os.path.join("/", rel, name))
            _mtools(["mcopy", "-i", target, os.path.join(dirpath, name), dest], env)
