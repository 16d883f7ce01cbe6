"""Build a .ccs package from a file tree: scan, split debug info, chunk, compress, sign, write.

Output is a function of the tree's content, modes and the given metadata and SOURCE_DATE_EPOCH only:
mtimes, inode order, ownership (unless preserve_owner) and temp paths never reach the package.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zstandard
from pyfastcdc import FastCDC

from conary.ccs.components import ComponentRules, is_config_path, is_default_component
from conary.ccs.debuginfo import DebugSplitter, TreeItem, missing_dirs, wants_split
from conary.ccs.deps import FileFacts, dependencies_from_facts, file_facts, needs_full_content
from conary.ccs.elfinfo import ElfInfo
from conary.ccs.errors import CcsError, CcsInputError
from conary.ccs.keys import SigningKey, as_signing_key
from conary.ccs.limits import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CHUNK_THRESHOLD, MiB
from conary.ccs.manifest import EMPTY_SHA256, encode_file, encode_manifest, symlink_escapes
from conary.ccs.merkle import content_root, merkle_root
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
from conary.ccs.tarfmt import BLOCK, MAX_MTIME, end_of_archive, make_header, padding
from conary.fsutil import atomic_writer

DEFAULT_COMPRESSION_LEVEL = 1  # zstd level; 3 packs ~5% smaller for ~1.5x the compression CPU
OBJECT_MEMORY_BUDGET = 256 * MiB  # compressed objects kept in memory between scan and write
SEGMENT_BYTES = 8 * MiB  # a bigger file's chunks are hashed and compressed in pieces of this size
BATCH_BYTES, BATCH_FILES = 1 * MiB, 64  # smaller files go to the workers in batches of this size
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of dirty pages, do not wait
_sync_file_range = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
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
                    if not target.startswith("/") and symlink_escapes(rel, target):
                        raise CcsInputError(
                            f"symlink points out of the package root ({target})",
                            where=entry.path,
                            hint="use an absolute target, which installers resolve inside the root",
                        )
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
    stamp: tuple[int, int, int]  # (size, mtime_ns, inode) of the source, checked again once it is read
    record: tuple[FileEntry, bytes] | None = None  # its manifest entry, when a worker made it already


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class _ObjectStore:
    """Compressed objects, each stored once: in memory up to a budget, the rest in a spool file.

    The archive needs the signed manifest (every chunk id) before the first object, so objects are
    compressed while files are scanned and kept here until they are written in first-use order.
    """

    def __init__(self, spool_path: Path, memory_budget: int, epoch: int) -> None:
        self._spool_path = spool_path
        self._budget = memory_budget
        self._epoch = epoch
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        self._memory: dict[str, tuple[bytes, bytes]] = {}
        self._spooled: dict[str, tuple[bytes, int, int]] = {}
        self._in_memory = 0
        self._spool_end = 0
        self._spool_fd = -1

    def claim(self, object_id: str) -> bool:
        """True exactly once per id: the caller then compresses the object and calls put()."""
        with self._lock:
            if object_id in self._claimed:
                return False
            self._claimed.add(object_id)
            return True

    def put(self, object_id: str, blob: bytes) -> None:
        # the tar header too, here on a worker rather than in the (serial) write loop
        header = make_header(f"objects/{object_id[:2]}/{object_id[2:]}", len(blob), self._epoch)
        with self._lock:
            if self._in_memory + len(blob) <= self._budget:
                self._memory[object_id] = (header, blob)
                self._in_memory += len(blob)
                return
            if self._spool_fd < 0:
                self._spool_fd = os.open(self._spool_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
            offset = self._spool_end
            self._spool_end += len(blob)
            self._spooled[object_id] = (header, offset, len(blob))
            fd = self._spool_fd
        view = memoryview(blob)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written

    def take(self, object_id: str) -> tuple[bytes, bytes]:
        """(tar header, compressed object), released from memory: each object is written once."""
        entry = self._memory.pop(object_id, None)
        if entry is not None:
            return entry
        header, offset, length = self._spooled.pop(object_id)
        return header, os.pread(self._spool_fd, length, offset)

    def close(self) -> None:
        if self._spool_fd >= 0:
            os.close(self._spool_fd)
            self._spool_fd = -1
        self._memory.clear()


class _Scanner:
    """Files from worker threads, read once each: debug split, facts, chunking, hashing, compression.

    A big file is cut here, then its chunks are hashed and compressed in segments on other workers
    while this one hashes the whole file, so one giant file still keeps every core busy.
    """

    def __init__(
        self,
        splitter: DebugSplitter | None,
        store: _ObjectStore,
        level: int,
        pool: ThreadPoolExecutor,
        rules: ComponentRules,
    ) -> None:
        self.splitter = splitter
        self.rules = rules
        self.store = store
        self.level = level
        self.pool = pool
        self._local = threading.local()

    def _tools(self) -> tuple[FastCDC, zstandard.ZstdCompressor]:
        local = self._local
        if getattr(local, "cdc", None) is None:
            local.cdc = new_chunker()
            # not thread-safe: one compressor per thread
            local.zstd = zstandard.ZstdCompressor(
                level=self.level, write_content_size=True, write_checksum=False
            )
        return local.cdc, local.zstd

    def scan_batch(self, items: list[TreeItem]) -> list[tuple[TreeItem, _Scanned | PackedFile]]:
        """Scan files; those not waiting for segments are checked and given their manifest entry
        here, on a worker, instead of in the serial part after the scan."""
        out: list[tuple[TreeItem, _Scanned | PackedFile]] = []
        for item in items:
            for source_item, scanned in self.scan(item):
                if scanned.pending:
                    out.append((source_item, scanned))
                    continue
                packed = _checked(source_item, scanned.packed())
                out.append(
                    (source_item, replace(packed, record=_file_record(source_item, packed, self.rules)))
                )
        return out

    def scan(self, item: TreeItem) -> list[tuple[TreeItem, _Scanned]]:
        scanned, elf = self._scan_one(item, check_debug=self.splitter is not None)
        if scanned is not None:
            return [(item, scanned)]
        assert self.splitter is not None and elf is not None
        stripped, debug_item = self.splitter.split(item, elf)
        out = [(stripped, self._scan_one(stripped, check_debug=False)[0])]
        if debug_item is not None:
            out.append((debug_item, self._scan_one(debug_item, check_debug=False)[0]))
        return out  # type: ignore[return-value]

    def _store(self, object_id: str, data: bytes | memoryview) -> None:
        if self.store.claim(object_id):
            self.store.put(object_id, self._tools()[1].compress(data))

    def _scan_one(self, item: TreeItem, *, check_debug: bool) -> tuple[_Scanned | None, ElfInfo | None]:
        """Scan a file, or return (None, its ELF facts) if its debug info must be split off first."""
        executable = bool(item.mode & 0o111)
        with open(item.source, "rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_size < CHUNK_THRESHOLD:
                data = handle.read()
                facts = file_facts(item.path, data, executable=executable)
                if check_debug and wants_split(item.path, facts.elf):
                    return None, facts.elf
                if not data:
                    return _Scanned(EMPTY_SHA256, 0, [], facts, _stamp(st)), None
                hexid = hashlib.sha256(data).hexdigest()
                self._store(hexid, data)
                return _Scanned(hexid, len(data), [(hexid,)], facts, _stamp(st)), None
            # No MAP_POPULATE: Python holds the GIL in mmap(), so pages are faulted in later by the
            # chunker, hashing and compression, which run without it on every core.
            mapped = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        with memoryview(mapped) as view:
            head = bytes(view[:256])
            content = view if needs_full_content(item.path, head) else head
            facts = file_facts(item.path, content, executable=executable)
            split = check_debug and wants_split(item.path, facts.elf)
            # pyfastcdc's iterator and chunks hold buffer exports: keep them inside this block.
            cuts = [] if split else [(c.offset, c.length) for c in self._tools()[0].cut_buf(view)]
        if split:
            mapped.close()
            return None, facts.elf
        segments = _segments(cuts)
        # Segments after the first go to other workers; each keeps the mapping alive until it is done.
        parts: list[tuple[str, ...] | Future[tuple[str, ...]]] = [
            self.pool.submit(self._hash_chunks, mapped, segment) for segment in segments[1:]
        ]
        parts.insert(0, self._hash_chunks(mapped, segments[0]))
        if len(cuts) == 1:
            whole = parts[0][0]  # type: ignore[index]
        else:
            with memoryview(mapped) as view:
                whole = hashlib.sha256(view).hexdigest()
        return _Scanned(whole, st.st_size, parts, facts, _stamp(st)), None

    def _hash_chunks(self, mapped: mmap.mmap, cuts: list[tuple[int, int]]) -> tuple[str, ...]:
        ids: list[str] = []
        with memoryview(mapped) as view:
            for start, length in cuts:
                with view[start : start + length] as piece:
                    hexid = hashlib.sha256(piece).hexdigest()
                    self._store(hexid, piece)
                ids.append(hexid)
        return tuple(ids)


@dataclass(frozen=True)
class _Scanned:
    """A scanned file whose chunk ids may still be coming from other workers (segments, in order)."""

    sha256: str
    size: int
    parts: list[tuple[str, ...] | Future[tuple[str, ...]]]
    facts: FileFacts
    stamp: tuple[int, int, int]

    @property
    def pending(self) -> bool:
        return any(isinstance(part, Future) for part in self.parts)

    def packed(self) -> PackedFile:
        chunks = tuple(
            c for part in self.parts for c in (part.result() if isinstance(part, Future) else part)
        )
        return PackedFile(self.sha256, self.size, chunks, self.facts, self.stamp)


def _segments(cuts: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Consecutive runs of chunks of about SEGMENT_BYTES each."""
    segments: list[list[tuple[int, int]]] = [[]]
    size = 0
    for cut in cuts:
        if size >= SEGMENT_BYTES:
            segments.append([])
            size = 0
        segments[-1].append(cut)
        size += cut[1]
    return segments


def object_order(files: Iterable[FileEntry]) -> list[str]:
    """Format-1 object order: first use, walking files in manifest order and their chunks in order."""
    seen: set[str] = set()
    order: list[str] = []
    for entry in files:
        for chunk in entry.chunks:
            if chunk not in seen:
                seen.add(chunk)
                order.append(chunk)
    return order


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
    memory_budget: int = OBJECT_MEMORY_BUDGET,
) -> Path:
    """Pack *tree* into ``<output_dir>/<name>-<version>-<release>.<arch>.ccs`` (atomically) and return it.

    component_rules: a recipe's [components] table (component -> globs, plus "exclude").
    scriptlets: pre_install, post_install, pre_remove, post_remove -> shell text.
    provenance: recipe hash, source checksums, derivation key, builder ... (text/int/bool values).
    workers: threads for chunking and compression (default: cores + 1).
    preserve_owner: record the tree's uid/gid instead of 0:0.
    memory_budget: bytes of compressed objects held in memory until they are written; the rest wait
    in a temporary file beside the output.
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
    # One more thread than cores: a worker waiting on the disk or the GIL would otherwise idle a core.
    workers = workers or (os.cpu_count() or 1) + 1
    output_dir.mkdir(parents=True, exist_ok=True)

    items = scan_tree(tree, rules, preserve_owner=preserve_owner)
    with tempfile.TemporaryDirectory(prefix=".ccs-build-", dir=output_dir) as work:
        workdir = Path(work)
        splitter = None
        if split_debug:
            (workdir / "debug").mkdir()
            splitter = DebugSplitter(workdir / "debug", {i.path for i in items})
        store = _ObjectStore(workdir / "objects.spool", memory_budget, source_date_epoch)
        try:
            results = _scan_files(items, splitter, store, compression_level, workers, rules)
            items = _merge_items(items, [item for item, _ in results])
            packed = {item.path: p for item, p in results}
            manifest, records = _manifest(items, packed, meta, rules, scripts, provenance, source_date_epoch)
            manifest_bytes = encode_manifest(manifest, records)
            signature = encode_signature(key, manifest_bytes)
            target = output_dir / f"{manifest.nevra}.ccs"
            with atomic_writer(target, 0o644) as out:
                _write_archive(
                    out, manifest_bytes, signature, object_order(manifest.files), store, source_date_epoch
                )
        finally:
            store.close()
    return target


def _scan_files(
    items: list[TreeItem],
    splitter: DebugSplitter | None,
    store: _ObjectStore,
    level: int,
    workers: int,
    rules: ComponentRules,
) -> list[tuple[TreeItem, PackedFile]]:
    """Scan every regular file on a thread pool; returns (item, packed) with stripped and debug files."""
    # Big files first so the last worker is not left alone with a giant.
    order = sorted((i for i in items if i.type == "file"), key=lambda i: -i.size)
    with ThreadPoolExecutor(workers) as pool:
        scanner = _Scanner(splitter, store, level, pool, rules)
        try:
            batches = pool.map(scanner.scan_batch, _batches(order))
            return [
                (item, s if isinstance(s, PackedFile) else _checked(item, s.packed()))
                for batch in batches
                for item, s in batch
            ]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _checked(item: TreeItem, packed: PackedFile) -> PackedFile:
    """*packed*, if its source did not change while it was read (size, mtime and inode as before)."""
    if _stamp(os.stat(item.source)) != packed.stamp:
        raise CcsError("file changed while it was being packed", where=item.source)
    return packed


def _batches(order: list[TreeItem]) -> Iterator[list[TreeItem]]:
    """Small files in batches of about BATCH_BYTES: one task each, not one per file, which spares
    the thread pool thousands of futures and the wake-ups and GIL hand-offs that come with them."""
    batch: list[TreeItem] = []
    size = 0
    for item in order:
        batch.append(item)
        size += item.size
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _merge_items(items: list[TreeItem], packed_items: list[TreeItem]) -> list[TreeItem]:
    """The tree's items with stripped copies swapped in, plus debug files and their directories."""
    by_path = {i.path: i for i in items}
    new_files = [i.path for i in packed_items if i.path not in by_path]
    for item in packed_items:
        by_path[item.path] = item
    for directory in missing_dirs(new_files, set(by_path)):
        by_path[directory.path] = directory
    return sorted(by_path.values(), key=lambda i: i.path.encode())


def _file_record(item: TreeItem, p: PackedFile, rules: ComponentRules) -> tuple[FileEntry, bytes]:
    """A regular file's manifest entry and its canonical CBOR."""
    component = rules.component_of(item.path, is_symlink=False)
    entry = FileEntry(
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
    return entry, encode_file(entry)


def _manifest(
    items: list[TreeItem],
    packed: Mapping[str, PackedFile],
    meta: PackageMeta,
    rules: ComponentRules,
    scripts: Mapping[str, str],
    provenance: Mapping[str, Any] | None,
    epoch: int,
) -> tuple[Manifest, list[bytes]]:
    entries: list[FileEntry] = []
    records: list[bytes] = []
    facts: dict[str, FileFacts] = {}
    for item in items:
        if item.type == "file":
            p = packed[item.path]
            facts[item.path] = p.facts
            entry, record = p.record or _file_record(item, p, rules)
        else:
            component = rules.component_of(item.path, is_symlink=item.type == "symlink")
            entry = FileEntry(
                item.path, item.type, item.mode, item.uid, item.gid, 0, "", (), item.target, component, False
            )
            record = encode_file(entry)
        entries.append(entry)
        records.append(record)
    grouped: dict[str, list[bytes]] = {}
    for entry, record in zip(entries, records, strict=True):
        grouped.setdefault(entry.component, []).append(record)
    components = tuple(
        Component(n, is_default_component(n), merkle_root(grouped[n])) for n in sorted(grouped)
    )
    provides, requires = dependencies_from_facts(
        entries, facts, name=meta.name, version=meta.version, release=meta.release
    )
    manifest = Manifest(
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
    return manifest, records


_IOV_BATCH = 1020  # buffers per writev (IOV_MAX is 1024): header, object, padding per entry


def _write_all(fd: int, buffers: list[bytes]) -> None:
    """Write *buffers* in order with few syscalls (writev may write only part of them)."""
    start = 0
    while start < len(buffers):
        written = os.writev(fd, buffers[start : start + _IOV_BATCH])
        while start < len(buffers) and written >= len(buffers[start]):
            written -= len(buffers[start])
            start += 1
        if written:
            buffers[start] = memoryview(buffers[start])[written:]  # type: ignore[call-overload]


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing this range now, so the final fsync has little left to wait for."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _write_archive(
    out: Any, manifest: bytes, signature: bytes, order: list[str], store: _ObjectStore, epoch: int
) -> None:
    """Write the archive through the raw fd: manifest, signature, then the objects in first-use order."""
    out.flush()
    fd = out.fileno()
    offset = flushed = 0
    pending: list[bytes] = []
    for name, data in (("MANIFEST", manifest), ("MANIFEST.sig", signature)):
        pending += (make_header(name, len(data), epoch), data, padding(len(data)))
        offset += BLOCK + len(data) + (-len(data) % BLOCK)
    for object_id in order:
        header, blob = store.take(object_id)
        pad = padding(len(blob))
        pending += (header, blob, pad)
        offset += BLOCK + len(blob) + len(pad)
        if len(pending) >= _IOV_BATCH:
            _write_all(fd, pending)
            pending = []
            _start_writeback(fd, flushed, offset - flushed)
            flushed = offset
    pending.append(end_of_archive(offset))
    _write_all(fd, pending)
