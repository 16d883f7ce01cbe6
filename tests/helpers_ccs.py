"""Helpers for the CCS tests: sample trees with real ELF files, and hand-crafted (signed) packages."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import zstandard

from conary.ccs.keys import SigningKey, new_signing_key
from conary.ccs.manifest import encode_manifest
from conary.ccs.merkle import component_root, content_root
from conary.ccs.model import Component, Dependency, FileEntry, Manifest
from conary.ccs.sign import encode_signature
from conary.ccs.tarfmt import end_of_archive, make_header, padding

LIBZ = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libz.so.1.*"))[0]
ZLIB_VERSION = LIBZ.name.removeprefix("libz.so.")

HELLO_C = r"""
#include <stdio.h>
#include <zlib.h>
int main(void) { printf("zlib %s\n", zlibVersion()); return 0; }
"""


def make_elf_tree(root: Path, *, order: Sequence[str] | None = None) -> Path:
    """A small zlib-like tree: real libz, a binary built with -g -lz, headers, zlib.pc, docs, config."""
    work = root.parent / (root.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    src = work / "zhello.c"
    src.write_text(HELLO_C)
    binary = work / "zhello"
    if not binary.exists():
        subprocess.run(
            ["gcc", "-g", "-O1", "-o", str(binary), str(src), "-lz", "-ffile-prefix-map=" + str(work) + "=."],
            check=True,
        )
    steps = {
        "lib": lambda: _copy(LIBZ, root / "usr/lib" / LIBZ.name, 0o755),
        "links": lambda: (
            _symlink(LIBZ.name, root / "usr/lib/libz.so.1"),
            _symlink("libz.so.1", root / "usr/lib/libz.so"),
        ),
        "static": lambda: _copy(Path("/usr/lib/x86_64-linux-gnu/libz.a"), root / "usr/lib/libz.a", 0o644),
        "bin": lambda: _copy(binary, root / "usr/bin/zhello", 0o755),
        "script": lambda: _write(root / "usr/bin/zscript", "#!/usr/bin/python3\nprint('hi')\n", 0o755),
        "headers": lambda: (
            _copy(Path("/usr/include/zlib.h"), root / "usr/include/zlib.h", 0o644),
            _copy(Path("/usr/include/zconf.h"), root / "usr/include/zconf.h", 0o644),
        ),
        "pc": lambda: _write(
            root / "usr/lib/pkgconfig/zlib.pc",
            f"prefix=/usr\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\nName: zlib\n"
            f"Description: zlib compression library\nVersion: {ZLIB_VERSION}\n\nRequires:\n"
            "Libs: -L${libdir} -lz\nCflags: -I${includedir}\n",
            0o644,
        ),
        "pc2": lambda: _write(
            root / "usr/lib/pkgconfig/zhello.pc",
            "Name: zhello\nVersion: 1.0\nRequires: zlib >= 1.2, libpng\nRequires.private: libzstd\n",
            0o644,
        ),
        "doc": lambda: (
            _write(root / "usr/share/doc/zlib/README", "zlib readme\n" * 50, 0o644),
            _write(root / "usr/share/man/man3/zlib.3", ".TH ZLIB 3\n", 0o644),
        ),
        "etc": lambda: _write(root / "etc/zhello.conf", "level = 6\n", 0o644),
        "big": lambda: _write_bytes(root / "usr/share/zhello/data.bin", _pseudo_random(300_000), 0o644),
        "empty": lambda: _write(root / "usr/share/zhello/empty", "", 0o644),
    }
    for name in order or list(steps):
        steps[name]()
    return root


def _pseudo_random(n: int, seed: bytes = b"ccs") -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


def _copy(src: Path, dst: Path, mode: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, mode)


def _symlink(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def _write(path: Path, text: str, mode: int) -> None:
    _write_bytes(path, text.encode(), mode)


def _write_bytes(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


# ------------------------------------------------------------------ crafted packages


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes, *, component: str = "runtime", mode: int = 0o644) -> FileEntry:
    chunks = (sha(data),) if data else ()
    return FileEntry(path, "file", mode, 0, 0, len(data), sha(data), chunks, "", component, False)


def dir_entry(path: str, component: str = "runtime") -> FileEntry:
    return FileEntry(path, "dir", 0o755, 0, 0, 0, "", (), "", component, False)


def symlink_entry(path: str, target: str, component: str = "runtime") -> FileEntry:
    return FileEntry(path, "symlink", 0o777, 0, 0, 0, "", (), target, component, False)


def make_manifest(files: Sequence[FileEntry], *, name: str = "evil", epoch: int = 0) -> Manifest:
    """A manifest whose roots and orderings are right, whatever the files say."""
    names = sorted({f.component for f in files})
    comps = tuple(
        Component(
            n, n in ("runtime", "lib", "config"), component_root([f for f in files if f.component == n])
        )
        for n in names
    )
    return Manifest(
        format_version=1,
        name=name,
        version="1",
        release="1",
        arch="x86_64",
        metadata={"summary": "", "description": "", "license": "", "homepage": ""},
        files=tuple(files),
        components=comps,
        provides=(Dependency("package", name, "1-1"),),
        requires=(),
        content_root=content_root(comps),
        source_date_epoch=epoch,
    )


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def craft_package(
    path: Path,
    manifest: Manifest | bytes,
    objects: Mapping[str, bytes],
    key: SigningKey | None = None,
    *,
    epoch: int = 0,
    raw_objects: bool = False,
) -> Path:
    """Write a .ccs whose MANIFEST (Manifest or raw bytes) is properly signed by *key*.

    objects maps an id to its uncompressed content (compressed here) or, with raw_objects, to the
    exact bytes to store.
    """
    key = key or new_signing_key()
    data = manifest if isinstance(manifest, bytes) else encode_manifest(manifest)
    sig = encode_signature(key, data)
    out = bytearray()
    for name, blob in (("MANIFEST", data), ("MANIFEST.sig", sig)):
        out += make_header(name, len(blob), epoch) + blob + padding(len(blob))
    order = list(objects)
    if not isinstance(manifest, bytes):  # format order: first use in the manifest, extras last
        first_use = list(dict.fromkeys(c for f in manifest.files for c in f.chunks))
        order = [i for i in first_use if i in objects] + [i for i in objects if i not in first_use]
    for object_id in order:
        blob = objects[object_id] if raw_objects else compress(objects[object_id])
        out += (
            make_header(f"objects/{object_id[:2]}/{object_id[2:]}", len(blob), epoch)
            + blob
            + padding(len(blob))
        )
    out += end_of_archive(len(out))
    path.write_bytes(bytes(out))
    return path


def make_manifest_for(files: Sequence[FileEntry], provenance: Mapping[str, str]) -> Manifest:
    """make_manifest plus provenance and a scriptlet, for round-trip tests."""
    manifest = make_manifest(files)
    return Manifest(
        **{**manifest.__dict__, "provenance": dict(provenance), "scriptlets": {"post_install": "true"}}
    )
