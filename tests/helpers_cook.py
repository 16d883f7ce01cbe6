"""Helpers for the cook tests: deterministic tarballs of tests/data/cook/tinyproj and recipe files."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "cook"
TINYPROJ = DATA / "tinyproj"
TINY_MTIME = 1_700_000_000


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def make_tarball(
    source: Path, dest: Path, top: str, *, extra: dict[str, bytes] | None = None, mtime: int = TINY_MTIME
) -> Path:
    """A gzip tarball of *source* under the top directory *top*, with fixed owners and mtimes."""
    with open(dest, "wb") as raw:
        import gzip

        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            info = tarfile.TarInfo(top)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = mtime
            tar.addfile(info)
            for path in sorted(source.rglob("*")):
                rel = path.relative_to(source).as_posix()
                info = tarfile.TarInfo(f"{top}/{rel}")
                info.mtime = mtime
                if path.is_dir():
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                else:
                    data = path.read_bytes()
                    info.size = len(data)
                    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                    tar.addfile(info, io.BytesIO(data))
            for name, data in (extra or {}).items():
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size = len(data)
                info.mode = 0o644
                info.mtime = mtime
                tar.addfile(info, io.BytesIO(data))
    return dest


TINY_STEPS = {
    "configure": "./configure --prefix=/usr",
    "make": "make",
    "check": "make check",
    "install": "make install",
}


def write_recipe(
    directory: Path,
    name: str,
    archive: str,
    checksum: str,
    *,
    version: str = "1.0",
    steps: dict[str, str] | None = None,
    extra: str = "",
) -> Path:
    """Write NAME.recipe.toml into *directory*; *steps* default to the tinyproj steps."""
    lines = [
        "[package]",
        f'name = "{name}"',
        f'version = "{version}"',
        'summary = "A test package"',
        'license = "MIT"',
        "",
        "[source]",
        f'archive = "{archive}"',
        f'checksum = "{checksum}"',
        "",
        "[build]",
    ]
    for step, script in (TINY_STEPS if steps is None else steps).items():
        lines.append(f"{step} = '''\n{script}\n'''")
    path = directory / f"{name}.recipe.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def tiny_recipe(
    tmp_path: Path, *, extra: str = "", steps: dict[str, str] | None = None, name: str = "tinyproj"
) -> Path:
    """A tinyproj tarball in *tmp_path* and a recipe next to it that points at it by relative path."""
    tarball = make_tarball(TINYPROJ, tmp_path / "tinyproj-1.0.tar.gz", "tinyproj-1.0")
    return write_recipe(tmp_path, name, tarball.name, sha256(tarball), steps=steps, extra=extra)
