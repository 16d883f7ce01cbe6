"""The Image stage: a bootable disk from the packages of the stages before it, with a checkpoint.

The disk is built by conary.image from the packages the image definition names, the packages earlier
stages add to every image (the Conary stage's `conary`), and what those require from the stages'
packages. Its key is the sha256 of every input: the definition's text, format and size, the target
file, Conary's version and each package file offered. The same key as the last build means the disk
on hand is that build's output, and nothing is done.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conary import __version__
from conary.fsutil import atomic_write_bytes
from conary.image import ImageDefinition, build_image
from conary.targets import Target


@dataclass(frozen=True)
class ImageOutcome:
    path: Path
    cached: bool
    seconds: float
    packages: tuple[str, ...]  # what the runtime installed (empty when cached)


def image_key(
    definition: ImageDefinition, target: Target, packages: Sequence[Path], extra: Sequence[str]
) -> str:
    h = hashlib.sha256()
    for line in (
        f"conary:{__version__}",
        f"format:{definition.format}",
        f"size:{definition.size}",
        f"extra:{','.join(extra)}",
        f"target:{hashlib.sha256(target.path.read_bytes()).hexdigest()}",
        f"definition:{hashlib.sha256(definition.text.encode()).hexdigest()}",
    ):
        h.update(line.encode() + b"\n")
    for path in sorted(packages, key=lambda p: p.name):
        h.update(f"package:{path.name}:{_file_sha256(path)}\n".encode())
    return h.hexdigest()


def build_stage_image(
    definition: ImageDefinition,
    target: Target,
    output: Path,
    packages: Sequence[Path],
    extra: Sequence[str],
    trust: Path,
    *,
    say: Callable[[str], None] | None = None,
) -> ImageOutcome:
    """OUTPUT built from PACKAGES (signed by the key whose public half is TRUST), unless
    OUTPUT.key holds the key of these inputs."""
    started = time.perf_counter()
    key = image_key(definition, target, packages, extra)
    record = output.with_name(output.name + ".key")
    if output.is_file() and record.is_file() and record.read_text().strip() == key:
        return ImageOutcome(output, True, time.perf_counter() - started, ())
    record.unlink(missing_ok=True)  # the disk is replaced below: the old key no longer describes it
    result = build_image(
        definition, target, output, packages=list(packages), trust=[trust], extra_packages=extra, progress=say
    )
    atomic_write_bytes(record, (key + "\n").encode())
    return ImageOutcome(result.path, False, time.perf_counter() - started, result.packages)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            h.update(block)
    return h.hexdigest()
