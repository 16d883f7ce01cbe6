"""Helpers for the image tests: the minimal profile's packages per architecture, cooked for real.

Each architecture's set (linux, minimal-init, busybox) is cooked at most once per test run, and kept
under .cache/image-test-packages/<arch>-<digest of the recipes> with the key that signed it, so a
later run with the same recipes reuses it (CI starts from a fresh clone and cooks once).

busybox: until the bootstrap's Base stage builds a static busybox, x86_64 images take Debian's
busybox-static binary (/bin/busybox, installed by scripts/setup) packed into a CCS with the same
library call as `conary ccs build`; aarch64 and riscv64 take tests/data/image/busybox.recipe.toml,
a small static busybox cross-compiled with the target macros.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from conary.ccs import PackageMeta, build_package, generate_keypair, load_signing_key
from conary.cook import CookOptions, cook_recipe
from conary.targets import load_target

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
TEST_BUSYBOX = REPO / "tests" / "data" / "image" / "busybox.recipe.toml"
HOST_BUSYBOX = Path("/bin/busybox")
CACHE = REPO / ".cache" / "image-test-packages"


def _inputs(arch: str) -> list[Path]:
    files = [RECIPES / "linux.recipe.toml", *sorted((RECIPES / "linux").glob("*.config"))]
    files += [RECIPES / "minimal-init.recipe.toml", *sorted((RECIPES / "minimal-init").iterdir())]
    files += [HOST_BUSYBOX] if arch == "x86_64" else [TEST_BUSYBOX]
    return files


def _digest(arch: str) -> str:
    h = hashlib.sha256(arch.encode())
    for path in _inputs(arch):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def host_busybox_package(out: Path, key: Path, work: Path) -> Path:
    """Debian's static busybox as a CCS: /bin/busybox and a relative link for every applet."""
    tree = work / "busybox-tree"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(HOST_BUSYBOX, tree / "bin" / "busybox")
    applets = subprocess.run([str(HOST_BUSYBOX), "--list-full"], capture_output=True, text=True, check=True)
    for rel in sorted(set(applets.stdout.split())):
        link = tree / rel
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(tree / "bin" / "busybox", link.parent))
    version = subprocess.run([str(HOST_BUSYBOX)], capture_output=True, text=True).stdout.split()[1]
    meta = PackageMeta("busybox", version.lstrip("v"), "1", "x86_64", summary="Debian's static busybox")
    return build_package(tree, meta, output_dir=out, signing_key=load_signing_key(key), split_debug=False)


def minimal_packages(arch: str, source_cache: Path) -> tuple[Path, Path]:
    """(directory of linux, minimal-init and busybox .ccs for ARCH, the public key that signed them)."""
    final = CACHE / f"{arch}-{_digest(arch)}"
    if (final / "done").is_file():
        return final / "dist", final / "key.pub"
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{arch}-", dir=CACHE))
    try:
        key, _ = generate_keypair(work / "key")
        dist = work / "dist"
        dist.mkdir()
        options = CookOptions(
            output_dir=dist,
            source_cache=source_cache,
            key=key,
            jobs=os.cpu_count(),
            target=load_target(arch).macros(),
        )
        recipes = [RECIPES / "linux.recipe.toml", RECIPES / "minimal-init.recipe.toml"]
        if arch == "x86_64":
            host_busybox_package(dist, key, work)
        else:
            recipes.append(TEST_BUSYBOX)
        for recipe in recipes:
            # A work directory of the test's own: nothing under the user's ~/.cache.
            cook_recipe(recipe, replace(options, workdir=work / f"cook-{recipe.stem}"))
        (work / "done").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(work, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final / "dist", final / "key.pub"
