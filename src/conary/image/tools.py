"""The external tools images need, found and checked before anything is written.

systemd-repart must be 254 or later, for ``--offline=yes`` (no root, no loop devices, vfat filled with
mtools, erofs). Debian 12 ships 252, so ``scripts/setup`` unpacks bookworm-backports' 254 into
REPART_DIR beside the system's own systemd; a newer one on PATH is used first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conary.errors import ConaryError, MissingToolError
from conary.fsutil import require_tool
from conary.targets import Target

REPART_DIR = Path("/usr/local/lib/conary/systemd-repart")
SYSTEMD_BOOT_DIRS = (Path("/usr/lib/systemd/boot/efi"), Path("/usr/local/lib/conary/systemd-boot"))
MIN_REPART = 254
_VERSION = re.compile(r"^systemd (\d+)")


@dataclass(frozen=True)
class Repart:
    path: Path
    version: int
    env: dict[str, str]  # what the binary needs in its environment (its private library directory)


def _repart_version(path: Path, env: dict[str, str]) -> int | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, env={**os.environ, **env}, timeout=30
        ).stdout
    except OSError:
        return None
    match = _VERSION.match(out)
    return int(match.group(1)) if match else None


def find_repart() -> Repart:
    """systemd-repart 254 or later: from $CONARY_SYSTEMD_REPART, PATH, or what scripts/setup unpacked."""
    candidates: list[tuple[Path, dict[str, str]]] = []
    if os.environ.get("CONARY_SYSTEMD_REPART"):
        candidates.append((Path(os.environ["CONARY_SYSTEMD_REPART"]), {}))
    on_path = shutil.which("systemd-repart")
    if on_path:
        candidates.append((Path(on_path), {}))
    candidates.append((REPART_DIR / "bin" / "systemd-repart", {"LD_LIBRARY_PATH": str(REPART_DIR / "lib")}))
    found = []
    for path, env in candidates:
        if path.is_file():
            version = _repart_version(path, env)
            if version is not None and version >= MIN_REPART:
                return Repart(path, version, env)
            found.append(f"{path} ({version or 'unknown version'})")
    raise ConaryError(
        f"systemd-repart {MIN_REPART} or later is needed to build images offline"
        + (f"; found only {', '.join(found)}" if found else ""),
        where="image build",
        hint="run 'bash scripts/setup' as root (it unpacks bookworm-backports' systemd-repart into "
        f"{REPART_DIR}),"
        " or set CONARY_SYSTEMD_REPART to a systemd-repart 254+",
    )


def systemd_boot(target: Target) -> Path | None:
    """systemd-boot's EFI binary for *target*, or None when this machine has none (riscv64 on Debian 12)."""
    for directory in SYSTEMD_BOOT_DIRS:
        path = directory / target.image.systemd_boot
        if path.is_file():
            return path
    return None


def require_systemd_boot(target: Target) -> Path:
    path = systemd_boot(target)
    if path is None:
        package = "systemd-boot-efi" + ("" if target.is_native else f":{target.debian_arch}")
        raise MissingToolError(
            target.image.systemd_boot, package, purpose=f"boot {target.arch} images through UEFI"
        )
    return path


def image_tools(filesystem: str) -> None:
    """The mkfs and copy tools an image needs: checked up front, naming their Debian packages."""
    require_tool("mkfs.fat", "dosfstools", "make the EFI system partition")
    require_tool("mcopy", "mtools", "fill the EFI system partition")
    if filesystem == "ext4":
        require_tool("mkfs.ext4", "e2fsprogs", "make the ext4 root")
        require_tool("debugfs", "e2fsprogs", "fix the ext4 root's inode times")
    else:
        require_tool("mkfs.erofs", "erofs-utils", "make the erofs root")
