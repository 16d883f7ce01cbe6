"""Host prerequisites of a bootstrap: the programs the host runs, each with its Debian package.

A bootstrap never builds against the host's /usr; the host only runs Conary, apt (to resolve and
download the seed), the sandbox and, for foreign targets and images, QEMU and the image tools.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from conary.targets import Target


@dataclass(frozen=True)
class Prerequisite:
    tool: str
    debian_package: str
    purpose: str
    found: str | None  # the program's path, None when missing

    @property
    def ok(self) -> bool:
        return self.found is not None


def prerequisites(target: Target, *, image: bool = True) -> list[Prerequisite]:
    """What the host needs to bootstrap *target*; *image* adds the image stage's tools."""
    wanted: list[tuple[str, str, str]] = [
        ("apt-get", "apt", "resolve and download the seed's Debian packages"),
        ("gpgv", "gpgv", "check the signatures of Debian's archive indexes"),
        ("patch", "patch", "apply recipe patches"),
    ]
    if not target.is_native:
        wanted.append((target.qemu.user, "qemu-user-static", f"run {target.arch} programs in checks"))
    if image:
        wanted += [
            ("systemd-repart", "systemd", "build the disk image"),
            ("mkfs.ext4", "e2fsprogs", "make the image's root file system"),
            ("mcopy", "mtools", "fill the image's EFI system partition"),
            ("qemu-img", "qemu-utils", "convert the image to qcow2"),
            (target.qemu.system, _system_package(target.qemu.system), "boot the image"),
        ]
    return [Prerequisite(tool, package, purpose, shutil.which(tool)) for tool, package, purpose in wanted]


def _system_package(binary: str) -> str:
    """Debian's package of a qemu-system binary."""
    if binary.endswith("x86_64"):
        return "qemu-system-x86"
    if binary.endswith(("aarch64", "arm")):
        return "qemu-system-arm"
    return "qemu-system-misc"
