"""Verify and apply a recipe's patches, in order, with GNU patch."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conary.errors import ConaryError, InputError
from conary.fsutil import require_tool

_DIGESTS = {"sha256", "sha512", "md5"}


@dataclass(frozen=True)
class PatchSpec:
    """One entry of ``[patches] files``: the file (relative to the recipe's directory), its checksum, -p."""

    file: str
    checksum: str | None
    strip: int = 1
    key: str = "patches.files[0]"  # the recipe key path, for errors


class PatchError(ConaryError):
    """A patch did not apply."""


def file_checksum(path: str | os.PathLike[str], algo: str = "sha256") -> str:
    hasher = hashlib.new(algo)
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            hasher.update(block)
    return f"{algo}:{hasher.hexdigest()}"


def verify_patch(spec: PatchSpec, recipe_dir: Path) -> Path:
    """The patch's path after checking that it exists and matches its checksum."""
    path = Path(spec.file) if os.path.isabs(spec.file) else recipe_dir / spec.file
    if not path.is_file():
        raise InputError(
            f"patch file '{spec.file}' not found (looked in {path.parent})",
            where=f"{spec.key}.file",
            hint="add the patch next to the recipe or fix the path",
        )
    if spec.checksum is None:
        return path
    algo, sep, _ = spec.checksum.partition(":")
    if not sep or algo not in _DIGESTS:
        raise InputError(
            f"patch checksum '{spec.checksum}' is not algo:hex",
            where=f"{spec.key}.checksum",
            hint="write it as sha256:<hex>",
        )
    actual = file_checksum(path, algo)
    if actual != spec.checksum.lower():
        raise InputError(
            f"checksum mismatch for patch {path}: expected {spec.checksum}, got {actual}",
            where=f"{spec.key}.checksum",
            hint="update the checksum only if the patch's new content is trusted",
        )
    return path


def apply_patch(spec: PatchSpec, patch_path: Path, source_root: Path, log_path: Path) -> None:
    """Apply one verified patch inside *source_root*; its output is appended to *log_path*."""
    tool = require_tool("patch", "patch", "apply recipe patches")
    argv = [tool, f"-p{spec.strip}", "-N", "--batch", "--no-backup-if-mismatch", "-i", str(patch_path)]
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        result = subprocess.run(
            argv,
            cwd=source_root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    if result.returncode != 0:
        raise PatchError(
            f"patch {spec.file} failed to apply (exit code {result.returncode}; log: {log_path})",
            where=spec.key,
            hint="the patch does not match this source version; refresh it",
        )


def apply_patches(verified: list[tuple[PatchSpec, Path]], source_root: Path, log_path: Path) -> list[str]:
    """Apply verified patches in order. Returns their sha256 checksums, in order, for provenance."""
    for spec, path in verified:
        apply_patch(spec, path, source_root, log_path)
    return [file_checksum(path) for _spec, path in verified]
