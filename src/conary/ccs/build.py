"""Build a .ccs package from a file tree: scan, split debug info, chunk, compress, sign, write.

Output is a function of the tree's content, modes and the given metadata and SOURCE_DATE_EPOCH only:
mtimes, inode order, ownership (unless preserve_owner) and temp paths never reach the package.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard
from pyfastcdc import FastCDC

from conary.ccs.components import ComponentRules, is_config_path, is_default_component
from conary.ccs.debuginfo import DebugSplitter, TreeItem, missing_dirs, wants_split
from conary.ccs.deps import FileFacts, dependencies_from_facts, file_facts, needs_full_content
from conary.ccs.elfinfo import ElfInfo
from conary.ccs.errors import CcsInputError
from conary.ccs.keys import SigningKey, as_signing_key
from conary.ccs.limits import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CHUNK_THRESHOLD
from conary.ccs.manifest import EMPTY_SHA256, encode_manifest
from conary.ccs.merkle import component_root, content_root
from conary.ccs.model import (
    FORMAT_VERSION,
    METADATA_KEYS,
    SCRIPTLET_NAMES,
    Component,
    FileEntry,
    Manifest,
    PackageMeta,
)
from conary.ccs.sign import encode_signature
from conary.ccs.tarfmt import MAX_MTIME, end_of_archive, make_header, padding
from conary.fsutil import atomic_writer

DEFAULT_COMPRESSION_LEVEL = 3
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~^-]*$")


def new_chunker() -> FastCDC:
    """The format-1 chunker: FastCDC 2020, min/avg/max 16/64/256 KiB, normalization 1, seed 0."""
    return FastCDC(CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX, normalized_chunking=1, seed=0)


def package_file_name(meta: PackageMeta) -> str:
    return f"{meta.nevra}.ccs"


def check_meta(meta: PackageMeta) -> None:
    for key in ("name", "version", "release", "arch"):
        value = getattr(meta, key)
        if not isinstance(value, str) or not _IDENT.match(value):
            raise CcsInputError(
                f"invalid {key} {value!r}",
                where=f"package.{key}",
                hint="use letters, digits and . _ + ~ ^ - (no spaces or '/'), starting with a letter/digit",
            )
    for key in METADATA_KEYS:
        if not isinstance(getattr(meta, key), str):
            raise CcsInputError(f"{key} must be a string", where=f"package.{key}")


# ---------------------------------------------------------------- tree scan


def scan_tree(tree: Path, rules: ComponentRules, *, preserve_owner: bool = False) -> list[TreeItem]:
    """Every entry below *tree* (not the root itself), minus excluded ones, in byte order of path."""
    if not tree.is_dir():
        raise CcsInputError("package tree is not a directory", where=str(tree))
    items: list[TreeItem] = []
    stack = [("", str(tree))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    raise CcsInputError(
                        "file name is not valid UTF-8", where=os.path.join(abs_dir, entry.name)
                    )
                if rules.excluded(rel):
                    continue
                st = entry.stat(follow_symlinks=False)
                uid, gid = (st.st_uid, st.st_gid) if preserve_owner else (0, 0)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISDIR(st.st_mode):
                    items.append(TreeItem(rel, "dir", mode, uid, gid, entry.path))
                    stack.append((rel, entry.path))
                elif stat.S_ISREG(st.st_mode):
                    items.append(TreeItem(rel, "file", mode, uid, gid, entry.path, "", st.st_size))
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(entry.path)
                    if not target:
                        raise CcsInputError("symlink with an empty target", where=entry.path)
                    items.append(TreeItem(rel, "symlink", 0o777, uid, gid, entry.path, target))
                else:
                    raise CcsInputError(
                        "unsupported file type (device, fifo or socket) in package tree",
                        where=entry.path,
                        hint="create device nodes in a post_install scriptlet instead",
                    )
    items.sort(key=lambda i: i.path.encode())
    return items


# ---------------------------------------------------------------- chunking and compression


@dataclass(frozen=True)
class PackedFile:
    sha256: str
    size: int
    chunks: tuple[str, ...]
    facts: FileFacts


class ObjectSpool:
    """Compressed objects, deduplicated by id, parked in a temp file until the archive is written."""

    def __init__(self, path: Path, level: int) -> None:
        self._file = open(path, "w+b")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()
        self._index: dict[bytes, tuple[int, int]] = {}
        self._claimed: set[bytes] = set()
        self._local = threading.local()
        self.level = level

    def _compressor(self) -> zstandard.ZstdCompressor:
        comp = getattr(self._local, "zstd", None)
        if comp is None:
            comp = zstandard.ZstdCompressor(level=self.level, write_content_size=True, write_checksum=False)
            self._local.zstd = comp
        return comp

    def add(self, digest: bytes, data: bytes | memoryview) -> None:
        with self._lock:
            if digest in self._claimed:
                return
            self._claimed.add(digest)
        blob = self._compressor().compress(data)
        with self._lock:
            offset = self._file.seek(0, os.SEEK_END)
            self._file.write(blob)
            self._index[digest] = (offset, len(blob))

    def sorted_ids(self) -> list[bytes]:
        return sorted(self._index)

    def read(self, digest: bytes) -> bytes:
        offset, length = self._index[digest]
        self._file.flush()
        return os.pread(self._file.fileno(), length, offset)

    def close(self) -> None:
        self._file.close()


class _Packer:
    """Packs one file per call (from worker threads): debug split, chunk, hash, compress, scan."""

    def __init__(self, spool: ObjectSpool, splitter: DebugSplitter | None) -> None:
        self.spool = spool
        self.splitter = splitter
        self._local = threading.local()

    def _chunker(self) -> FastCDC:
        cdc = getattr(self._local, "cdc", None)
        if cdc is None:
            cdc = self._local.cdc = new_chunker()
        return cdc

    def pack(self, item: TreeItem) -> list[tuple[TreeItem, PackedFile]]:
        packed, elf = self._pack_one(item, check_debug=self.splitter is not None)
        if packed is not None:
            return [(item, packed)]
        assert self.splitter is not None and elf is not None
        stripped, debug_item = self.splitter.split(item, elf)
        out = [(stripped, self._pack_one(stripped, check_debug=False)[0])]
        if debug_item is not None:
            out.append((debug_item, self._pack_one(debug_item, check_debug=False)[0]))
        return out  # type: ignore[return-value]

    def _pack_one(self, item: TreeItem, *, check_debug: bool) -> tuple[PackedFile | None, ElfInfo | None]:
        """Pack a file, or return (None, its ELF facts) if its debug info must be split off first."""
        executable = bool(item.mode & 0o111)
        with open(item.source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < CHUNK_THRESHOLD:
                data = handle.read()
                facts = file_facts(item.path, data, executable=executable)
                if check_debug and wants_split(item.path, facts.elf):
                    return None, facts.elf
                if not data:
                    return PackedFile(EMPTY_SHA256, 0, (), facts), None
                digest = hashlib.sha256(data).digest()
                self.spool.add(digest, data)
                hexid = digest.hex()
                return PackedFile(hexid, len(data), (hexid,), facts), None
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        try:
            head = bytes(view[:256])
            content = view if needs_full_content(item.path, head) else head
            facts = file_facts(item.path, content, executable=executable)
            if check_debug and wants_split(item.path, facts.elf):
                return None, facts.elf
            return self._pack_view(view, facts), None
        finally:
            view.release()
            mapped.close()

    def _pack_view(self, view: memoryview, facts: FileFacts) -> PackedFile:
        whole = hashlib.sha256()
        chunks: list[str] = []
        # pyfastcdc's iterator and chunks hold buffer exports: keep them inside this frame.
        for start, length in [(c.offset, c.length) for c in self._chunker().cut_buf(view)]:
            with view[start : start + length] as piece:
                whole.update(piece)
                digest = hashlib.sha256(piece).digest()
                self.spool.add(digest, piece)
            chunks.append(digest.hex())
        return PackedFile(whole.hexdigest(), len(view), tuple(chunks), facts)


# ---------------------------------------------------------------- the package


def build_package(
    tree: str | os.PathLike[str],
    meta: PackageMeta,
    *,
    output_dir: str | os.PathLike[str],
    signing_key: SigningKey | str | os.PathLike[str],
    component_rules: Mapping[str, Iterable[str] | str] | ComponentRules | None = None,
    scriptlets: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    source_date_epoch: int = 0,
    split_debug: bool = True,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    workers: int | None = None,
    preserve_owner: bool = False,
) -> Path:
    """Pack *tree* into ``<output_dir>/<name>-<version>-<release>.<arch>.ccs`` (atomically) and return it.

    component_rules: a recipe's [components] table (component -> globs, plus "exclude").
    scriptlets: pre_install, post_install, pre_remove, post_remove -> shell text.
    provenance: recipe hash, source checksums, derivation key, builder ... (text/int/bool values).
    """
    check_meta(meta)
    tree = Path(tree)
    output_dir = Path(output_dir)
    key = as_signing_key(signing_key)
    rules = (
        component_rules
        if isinstance(component_rules, ComponentRules)
        else ComponentRules.from_mapping(component_rules)
    )
    scripts = dict(scriptlets or {})
    for name, text in scripts.items():
        if name not in SCRIPTLET_NAMES:
            raise CcsInputError(
                f"unknown scriptlet {name!r}",
                where=f"scriptlets.{name}",
                hint=f"expected one of {', '.join(SCRIPTLET_NAMES)}",
            )
        if not isinstance(text, str):
            raise CcsInputError("a scriptlet is shell text", where=f"scriptlets.{name}")
    if not isinstance(source_date_epoch, int) or not 0 <= source_date_epoch <= MAX_MTIME:
        raise CcsInputError(f"SOURCE_DATE_EPOCH {source_date_epoch!r} is out of range (0..{MAX_MTIME})")
    workers = workers or os.cpu_count() or 1
    output_dir.mkdir(parents=True, exist_ok=True)

    items = scan_tree(tree, rules, preserve_owner=preserve_owner)
    with tempfile.TemporaryDirectory(prefix=".ccs-build-", dir=output_dir) as work:
        workdir = Path(work)
        splitter = None
        if split_debug:
            (workdir / "debug").mkdir()
            splitter = DebugSplitter(workdir / "debug", {i.path for i in items})
        spool = ObjectSpool(workdir / "objects.spool", compression_level)
        try:
            packer = _Packer(spool, splitter)
            # Big files first so the last worker is not left alone with a giant.
            order = sorted((i for i in items if i.type == "file"), key=lambda i: -i.size)
            with ThreadPoolExecutor(workers) as pool:
                results = [pair for pairs in pool.map(packer.pack, order) for pair in pairs]
            items = _merge_items(items, [item for item, _ in results])
            packed = {item.path: p for item, p in results}
            manifest = _manifest(items, packed, meta, rules, scripts, provenance, source_date_epoch)
            manifest_bytes = encode_manifest(manifest)
            signature = encode_signature(key, manifest_bytes)
            target = output_dir / f"{manifest.nevra}.ccs"
            with atomic_writer(target, 0o644) as out:
                _write_archive(out, manifest_bytes, signature, spool, source_date_epoch)
        finally:
            spool.close()
    return target


def _merge_items(items: list[TreeItem], packed_items: list[TreeItem]) -> list[TreeItem]:
    """The tree's items with stripped copies swapped in, plus debug files and their directories."""
    by_path = {i.path: i for i in items}
    new_files = [i.path for i in packed_items if i.path not in by_path]
    for item in packed_items:
        by_path[item.path] = item
    for directory in missing_dirs(new_files, set(by_path)):
        by_path[directory.path] = directory
    return sorted(by_path.values(), key=lambda i: i.path.encode())


def _manifest(
    items: list[TreeItem],
    packed: Mapping[str, PackedFile],
    meta: PackageMeta,
    rules: ComponentRules,
    scripts: Mapping[str, str],
    provenance: Mapping[str, Any] | None,
    epoch: int,
) -> Manifest:
    entries: list[FileEntry] = []
    facts: dict[str, FileFacts] = {}
    for item in items:
        component = rules.component_of(item.path, is_symlink=item.type == "symlink")
        if item.type == "file":
            p = packed[item.path]
            facts[item.path] = p.facts
            entries.append(
                FileEntry(
                    item.path,
                    "file",
                    item.mode,
                    item.uid,
                    item.gid,
                    p.size,
                    p.sha256,
                    p.chunks,
                    "",
                    component,
                    is_config_path(item.path),
                )
            )
        else:
            entries.append(
                FileEntry(
                    item.path,
                    item.type,
                    item.mode,
                    item.uid,
                    item.gid,
                    0,
                    "",
                    (),
                    item.target,
                    component,
                    False,
                )
            )
    names = sorted({e.component for e in entries})
    components = tuple(
        Component(n, is_default_component(n), component_root([e for e in entries if e.component == n]))
        for n in names
    )
    provides, requires = dependencies_from_facts(
        entries, facts, name=meta.name, version=meta.version, release=meta.release
    )
    return Manifest(
        format_version=FORMAT_VERSION,
        name=meta.name,
        version=meta.version,
        release=meta.release,
        arch=meta.arch,
        metadata={k: getattr(meta, k) for k in METADATA_KEYS},
        files=tuple(entries),
        components=components,
        provides=provides,
        requires=requires,
        scriptlets=dict(scripts),
        provenance=dict(provenance or {}),
        content_root=content_root(components),
        source_date_epoch=epoch,
    )


def _write_archive(out: Any, manifest: bytes, signature: bytes, spool: ObjectSpool, epoch: int) -> None:
    offset = 0

    def entry(name: str, data: bytes) -> None:
        nonlocal offset
        block = make_header(name, len(data), epoch) + data + padding(len(data))
        out.write(block)
        offset += len(block)

    entry("MANIFEST", manifest)
    entry("MANIFEST.sig", signature)
    for digest in spool.sorted_ids():
        hexid = digest.hex()
        entry(f"objects/{hexid[:2]}/{hexid[2:]}", spool.read(digest))
    out.write(end_of_archive(offset))
