"""What is on a disk: partitions (sfdisk), the BLS entry (mtools, from the ESP), packages (the root's DB).

Nothing is mounted and nothing needs root: a qcow2 disk is converted to a sparse raw copy first, the
ESP is read with mtools at the partition's offset, and the root's Conary database is copied out of
the filesystem (debugfs for ext4, fsck.erofs --extract for erofs) and opened with the runtime.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.errors import ConaryError, InputError
from conary.fsutil import require_tool
from conary.runtime.db import Database
from conary.runtime.queries import InstalledPackage

DB_PATH = "var/lib/conary/conary.db"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True)
class Partition:
    number: int
    label: str
    type: str  # GPT type GUID
    uuid: str
    start: int  # bytes
    size: int  # bytes


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    format: str
    size: int  # the disk's virtual size
    disk_uuid: str
    partitions: tuple[Partition, ...]
    boot_entry: dict[str, str]  # BLS keys: title, version, linux, options
    boot_entry_name: str
    packages: tuple[InstalledPackage, ...]

    def partition(self, label: str) -> Partition | None:
        return next((p for p in self.partitions if p.label == label), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "size": self.size,
            "disk_uuid": self.disk_uuid,
            "partitions": [p.__dict__ for p in self.partitions],
            "boot_entry": {"name": self.boot_entry_name, **self.boot_entry},
            "packages": [p.to_json() for p in self.packages],
        }


def disk_format(path: Path) -> str:
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


@contextmanager
def raw_view(disk: Path) -> Iterator[Path]:
    """The disk as a raw file: itself, or a sparse raw copy of a qcow2 disk."""
    if disk_format(disk) == "raw":
        yield disk
        return
    require_tool("qemu-img", "qemu-utils", "read qcow2 disks")
    with tempfile.TemporaryDirectory(prefix="conary-inspect-") as tmp:
        raw = Path(tmp) / "disk.raw"
        done = subprocess.run(
            ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(disk), str(raw)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise InputError(f"not a readable qcow2 disk: {done.stderr.strip()}", where=str(disk))
        yield raw


def partitions(raw: Path, *, where: str) -> tuple[str, list[Partition]]:
    """The GPT's disk UUID and partitions; a disk without a readable GPT is an InputError."""
    require_tool("sfdisk", "fdisk", "read partition tables")
    done = subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise InputError(
            f"no readable partition table: {done.stderr.strip() or 'sfdisk found none'}", where=where
        )
    table = json.loads(done.stdout)["partitiontable"]
    if table.get("label") != "gpt":
        raise InputError(f"the partition table is {table.get('label')!r}, not GPT", where=where)
    sector = int(table.get("sectorsize", 512))
    parts = []
    for number, p in enumerate(table.get("partitions", []), start=1):
        parts.append(
            Partition(
                number=number,
                label=p.get("name", ""),
                type=p["type"].upper(),
                uuid=p.get("uuid", "").upper(),
                start=int(p["start"]) * sector,
                size=int(p["size"]) * sector,
            )
        )
    return table.get("id", "").upper(), parts


def esp_of(parts: list[Partition], *, where: str) -> Partition:
    esp = next((p for p in parts if p.type == ESP_TYPE), None)
    if esp is None:
        raise InputError("the disk has no EFI system partition", where=where)
    return esp


def read_esp_file(raw: Path, esp: Partition, path: str) -> bytes:
    """One file of the ESP, read with mtools at the partition's offset."""
    require_tool("mtype", "mtools", "read the EFI system partition")
    done = subprocess.run(["mcopy", "-n", "-i", f"{raw}@@{esp.start}", f"::{path}", "-"], capture_output=True)
    if done.returncode != 0:
        raise InputError(
            f"cannot read {path} from the EFI system partition: "
            f"{done.stderr.decode(errors='replace').strip()}",
            where=str(raw),
        )
    return done.stdout


def list_esp(raw: Path, esp: Partition, directory: str) -> list[str]:
    done = subprocess.run(
        ["mdir", "-b", "-i", f"{raw}@@{esp.start}", f"::{directory}"], capture_output=True, text=True
    )
    if done.returncode != 0:
        return []
    return sorted(line.strip() for line in done.stdout.splitlines() if line.strip())


def boot_entry(raw: Path, esp: Partition) -> tuple[str, dict[str, str]]:
    """The ESP's (first) Boot Loader Specification entry: its file name and its keys."""
    entries = [e for e in list_esp(raw, esp, "/loader/entries") if e.endswith(".conf")]
    if not entries:
        raise InputError("the EFI system partition has no boot entry (loader/entries/*.conf)", where=str(raw))
    name = entries[0].rsplit("/", 1)[-1]
    fields: dict[str, str] = {}
    for line in read_esp_file(raw, esp, f"/loader/entries/{name}").decode(errors="replace").splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            fields[key] = value.strip()
    return name, fields


def _extract_root_file(raw: Path, root: Partition, path: str, dest: Path) -> bool:
    """Copy PATH out of the root filesystem into DEST; False when the filesystem has no such file."""
    with open(raw, "rb") as f:
        f.seek(root.start + 1024 + 56)
        ext_magic = f.read(2)
        f.seek(root.start + 1024)
        erofs_magic = f.read(4)
    if ext_magic == b"\x53\xef":
        require_tool("debugfs", "e2fsprogs", "read the ext4 root")
        subprocess.run(
            ["debugfs", "-R", f"dump /{path} {dest}", f"{raw}?offset={root.start}"], capture_output=True
        )
        return dest.is_file() and dest.stat().st_size > 0
    if erofs_magic == b"\xe2\xe1\xf5\xe0":
        require_tool("fsck.erofs", "erofs-utils", "read the erofs root")
        with tempfile.TemporaryDirectory(prefix="conary-erofs-") as tmp:
            part = Path(tmp) / "root.erofs"
            with open(raw, "rb") as src, open(part, "wb") as out:
                src.seek(root.start)
                remaining = root.size
                while remaining:
                    chunk = src.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    remaining -= len(chunk)
            tree = Path(tmp) / "tree"
            subprocess.run(["fsck.erofs", f"--extract={tree}", str(part)], capture_output=True)
            found = tree / path
            if found.is_file():
                dest.write_bytes(found.read_bytes())
                return True
        return False
    raise InputError("the root partition holds neither ext4 nor erofs", where=str(raw))


def installed_packages(raw: Path, root: Partition) -> tuple[InstalledPackage, ...]:
    """The packages the image's own Conary database lists (empty when the root has no database)."""
    with tempfile.TemporaryDirectory(prefix="conary-inspect-db-") as tmp:
        db_path = Path(tmp) / DB_PATH
        db_path.parent.mkdir(parents=True)
        if not _extract_root_file(raw, root, DB_PATH, db_path):
            return ()
        try:
            db = Database.open(db_path)
        except Exception as err:  # a damaged database is reported, not a traceback
            raise ConaryError(f"the image's Conary database cannot be read: {err}", where=str(raw)) from None
        try:
            return tuple(InstalledPackage.of(sel) for sel in db.installed().values())
        finally:
            db.close()


def inspect_image(disk: Path) -> ImageInfo:
    if not disk.is_file():
        raise InputError("disk not found", where=str(disk))
    fmt = disk_format(disk)
    with raw_view(disk) as raw:
        disk_uuid, parts = partitions(raw, where=str(disk))
        esp = esp_of(parts, where=str(disk))
        name, entry = boot_entry(raw, esp)
        roots = [p for p in parts if p.label.startswith("root-")]
        packages = installed_packages(raw, roots[0]) if roots else ()
        return ImageInfo(disk, fmt, raw.stat().st_size, disk_uuid, tuple(parts), entry, name, packages)
