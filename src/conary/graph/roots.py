"""Build roots made of packages, assembled by the runtime and cached by the set of their digests.

A root is a directory the runtime installed a set of .ccs files into. Its cache name is the sha256
of the sorted output digests of those packages, so two recipes with the same dependencies share one
root, and a stage's seed root is assembled once rather than once per recipe. A root is assembled in a
temporary directory beside the cache and renamed into place when complete: a kill leaves either the
whole root or none, never half of one. Roots are used read-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conary.ccs import PublicKey, open_package
from conary.fsutil import fsync_dir
from conary.runtime import PackageSource, install_packages

ROOTS_FORMAT = "conary-root V1"
# What a build needs of a dependency: its programs, libraries, headers and pkg-config files, and
# configuration; not its documentation or debug info.
BUILD_COMPONENTS = ("runtime", "lib", "devel", "config")


@dataclass(frozen=True)
class RootPackage:
    path: Path  # the .ccs file
    digest: str  # its output digest
    provides: tuple[str, ...] = ()  # its name and typed provides, e.g. "soname(libz.so.1)"

    @property
    def name(self) -> str:
        return self.provides[0] if self.provides else self.path.name


@dataclass(frozen=True)
class BuildRoot:
    """What a cook sees under its build steps: layers, top first, and optionally the host below."""

    layers: tuple[Path, ...]
    host_seed: bool


def build_components(path: Path) -> tuple[str, ...]:
    """The components of the package at *path* that a build root gets."""
    with open_package(path) as package:
        names = {c.name for c in package.manifest.components}
    return tuple(c for c in BUILD_COMPONENTS if c in names)


def root_digest(packages: Sequence[RootPackage]) -> str:
    text = "\n".join([ROOTS_FORMAT, *sorted(p.digest for p in packages)]) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()


def assemble_root(cache: Path, packages: Sequence[RootPackage], trusted_keys: Sequence[PublicKey]) -> Path:
    """The root holding exactly *packages*, from the cache or installed now by the runtime."""
    final = Path(cache) / root_digest(packages)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:16]}.", dir=final.parent))
    try:
        if packages:
            # check_deps off: a layer is one part of a union (the seed's libc lives in another layer
            # or on the host), so its own database cannot see everything its packages need.
            install_packages(
                tmp,
                [
                    PackageSource(p.path, build_components(p.path))
                    for p in sorted(packages, key=lambda p: p.digest)
                ],
                trusted_keys=list(trusted_keys),
                check_deps=False,
            )
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same root first; theirs is as good as ours.
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_partial_roots(cache: Path) -> None:
    """Remove what killed runs left behind: temporary roots that were never renamed into place."""
    if not Path(cache).is_dir():
        return
    for entry in os.listdir(cache):
        if entry.startswith("."):
            with contextlib.suppress(OSError):
                shutil.rmtree(Path(cache) / entry)
