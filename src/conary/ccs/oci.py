"""Export packages as an OCI image-layout archive with one layer: the union of their default components."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from conary.ccs.errors import CcsError, CcsInputError
from conary.ccs.model import FileEntry
from conary.ccs.reader import Package, TrustedKey, open_package
from conary.fsutil import atomic_writer

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

OCI_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "riscv64": ("riscv64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "armv7l": ("arm", "v7"),
    "armv7hl": ("arm", "v7"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
}
NOARCH = frozenset({"noarch", "all", "any"})


def oci_platform(arch: str) -> dict[str, str]:
    try:
        name, variant = OCI_ARCH[arch]
    except KeyError:
        raise CcsInputError(
            f"no OCI architecture name for {arch!r}", hint=f"known: {', '.join(sorted(OCI_ARCH))}"
        )
    platform = {"architecture": name, "os": "linux"}
    if variant:
        platform["variant"] = variant
    return platform


def _canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to *sink*."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.sink.write(view)
        self.size += len(view)
        return len(view)


class _ChunkReader(io.RawIOBase):
    """Read a package file's verified chunks as one stream (what tarfile.addfile wants)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _union(packages: Sequence[Package]) -> list[tuple[Package | None, FileEntry]]:
    chosen: dict[str, tuple[Package | None, FileEntry]] = {}
    for package in packages:
        for entry in package.files(None):
            if entry.path in chosen:
                other_pkg, other = chosen[entry.path]
                same = (other.type, other.mode, other.sha256, other.target, other.uid, other.gid) == (
                    entry.type,
                    entry.mode,
                    entry.sha256,
                    entry.target,
                    entry.uid,
                    entry.gid,
                )
                if not same and not (other.type == entry.type == "dir"):
                    owner = other_pkg.nevra if other_pkg else "?"
                    raise CcsError(
                        f"{entry.path} differs between {owner} and {package.nevra}", where="oci export"
                    )
                continue
            chosen[entry.path] = (package, entry)
    # Every parent directory appears before its children.
    for path in list(chosen):
        parent = path.rpartition("/")[0]
        while parent and parent not in chosen:
            chosen[parent] = (None, FileEntry(parent, "dir", 0o755))
            parent = parent.rpartition("/")[0]
    return [chosen[p] for p in sorted(chosen, key=lambda p: p.encode())]


def _write_layer(
    entries: list[tuple[Package | None, FileEntry]], sink: BinaryIO, epoch: int
) -> tuple[str, str, int]:
    """Write the gzip layer to *sink*; return (layer digest, diff_id, compressed size)."""
    compressed = _HashingWriter(sink)
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        plain = _HashingWriter(gz)
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for package, entry in entries:
                info = tarfile.TarInfo(entry.path)
                info.mode = entry.mode
                info.uid, info.gid = entry.uid, entry.gid
                info.uname = info.gname = ""
                info.mtime = epoch
                if entry.type == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.type == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.target
                    tar.addfile(info)
                else:
                    assert package is not None
                    info.size = entry.size
                    tar.addfile(info, io.BufferedReader(_ChunkReader(package.iter_file_data(entry)), 1 << 18))
    return f"sha256:{compressed.digest.hexdigest()}", f"sha256:{plain.digest.hexdigest()}", compressed.size


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = len(data), 0o644, epoch, "", ""
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.uname, info.gname = tarfile.DIRTYPE, 0o755, epoch, "", ""
    tar.addfile(info)


def export_oci(
    packages: Iterable[str | os.PathLike[str] | Package],
    output: str | os.PathLike[str],
    *,
    trusted_keys: Sequence[TrustedKey] | None = None,
    arch: str | None = None,
    tag: str = "latest",
) -> Path:
    """Write an OCI image-layout tar (oci-layout, index.json, blobs/sha256/...) to *output*, atomically."""
    output = Path(output)
    opened: list[Package] = []
    owned: list[Package] = []
    try:
        for item in packages:
            if isinstance(item, Package):
                opened.append(item)
            else:
                pkg = open_package(item, trusted_keys)
                owned.append(pkg)
                opened.append(pkg)
        if not opened:
            raise CcsInputError("no packages to export")
        arches = sorted({p.manifest.arch for p in opened} - NOARCH)
        if arch is None:
            if len(arches) > 1:
                raise CcsInputError(f"packages are for different architectures ({', '.join(arches)})")
            if not arches:
                raise CcsInputError("all packages are noarch; name the image architecture", hint="pass arch=")
            arch = arches[0]
        platform = oci_platform(arch)
        epoch = max(p.manifest.source_date_epoch for p in opened)
        created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        nevras = [p.nevra for p in opened]
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent) as layer:
            layer_digest, diff_id, layer_size = _write_layer(_union(opened), layer, epoch)
            config = _canonical_json(
                {
                    **platform,
                    "created": created,
                    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                    "history": [{"created": created, "created_by": "conary ccs export " + " ".join(nevras)}],
                }
            )
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            manifest = _canonical_json(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_MANIFEST,
                    "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
                    "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
                    "annotations": {
                        "org.opencontainers.image.created": created,
                        "dev.conary.packages": " ".join(nevras),
                    },
                }
            )
            manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            index = _canonical_json(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_INDEX,
                    "manifests": [
                        {
                            "mediaType": MEDIA_MANIFEST,
                            "digest": manifest_digest,
                            "size": len(manifest),
                            "platform": platform,
                            "annotations": {"org.opencontainers.image.ref.name": tag},
                        }
                    ],
                }
            )
            blobs = sorted(
                [(config_digest, config), (manifest_digest, manifest), (layer_digest, None)],
                key=lambda b: b[0],
            )
            with (
                atomic_writer(output, 0o644) as out,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                _add_dir(tar, "blobs", epoch)
                _add_dir(tar, "blobs/sha256", epoch)
                for digest, data in blobs:
                    name = "blobs/sha256/" + digest.removeprefix("sha256:")
                    if data is not None:
                        _add_bytes(tar, name, data, epoch)
                    else:
                        info = tarfile.TarInfo(name)
                        info.size, info.mode, info.mtime, info.uname, info.gname = (
                            layer_size,
                            0o644,
                            epoch,
                            "",
                            "",
                        )
                        layer.seek(0)
                        tar.addfile(info, layer)
                _add_bytes(tar, "index.json", index, epoch)
                _add_bytes(tar, "oci-layout", _canonical_json({"imageLayoutVersion": "1.0.0"}), epoch)
    finally:
        for pkg in owned:
            pkg.close()
    return output
