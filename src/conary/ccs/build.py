"""Build a .ccs package from a file tree: scan, split debug info, chunk, compress, sign, write.

Output is a function of the tree's content, modes and the given metadata and SOURCE_DATE_EPOCH only:
mtimes, inode order, ownership (unless preserve_owner) and temp paths never reach the package.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import mmap
import os
import re
import stat
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
from conary.ccs.limits import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CHUNK_THRESHOLD
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

DEFAULT_COMPRESSION_LEVEL = 1  # zstd level; 3 packs ~4% smaller at ~1.3x the CPU (bench/ccs_pack.py)
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
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
    stamp: tuple[int, int, int]  # (size, mtime_ns, inode) of the source, checked again at the end


@dataclass(frozen=True)
class ChunkSource:
    """Where the bytes of an object are read from when it is compressed."""

    path: str
    offset: int
    length: int


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class _Scanner:
    """Pass 1, one file per call from worker threads: debug split, chunking, hashing, dependency facts."""

    def __init__(self, splitter: DebugSplitter | None) -> None:
        self.splitter = splitter
        self.sources: dict[str, ChunkSource] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _chunker(self) -> FastCDC:
        cdc = getattr(self._local, "cdc", None)
        if cdc is None:
            cdc = self._local.cdc = new_chunker()
        return cdc

    def scan(self, item: TreeItem) -> list[tuple[TreeItem, PackedFile]]:
        packed, elf = self._scan_one(item, check_debug=self.splitter is not None)
        if packed is not None:
            return [(item, packed)]
        assert self.splitter is not None and elf is not None
        stripped, debug_item = self.splitter.split(item, elf)
        out = [(stripped, self._scan_one(stripped, check_debug=False)[0])]
        if debug_item is not None:
            out.append((debug_item, self._scan_one(debug_item, check_debug=False)[0]))
        return out  # type: ignore[return-value]

    def _record(self, found: list[tuple[str, ChunkSource]]) -> None:
        with self._lock:
            for object_id, source in found:
                self.sources.setdefault(object_id, source)

    def _scan_one(self, item: TreeItem, *, check_debug: bool) -> tuple[PackedFile | None, ElfInfo | None]:
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
                    return PackedFile(EMPTY_SHA256, 0, (), facts, _stamp(st)), None
                hexid = hashlib.sha256(data).hexdigest()
                self._record([(hexid, ChunkSource(item.source, 0, len(data)))])
                return PackedFile(hexid, len(data), (hexid,), facts, _stamp(st)), None
            # MAP_POPULATE: fault the pages in once, not one by one under the chunker
            mapped = mmap.mmap(handle.fileno(), 0, flags=_MAP_FLAGS, prot=mmap.PROT_READ)
        view = memoryview(mapped)
        try:
            head = bytes(view[:256])
            content = view if needs_full_content(item.path, head) else head
            facts = file_facts(item.path, content, executable=executable)
            if check_debug and wants_split(item.path, facts.elf):
                return None, facts.elf
            return self._scan_view(item.source, view, facts, _stamp(st)), None
        finally:
            view.release()
            mapped.close()

    def _scan_view(
        self, source: str, view: memoryview, facts: FileFacts, stamp: tuple[int, int, int]
    ) -> PackedFile:
        whole = hashlib.sha256()
        chunks: list[str] = []
        found: list[tuple[str, ChunkSource]] = []
        # pyfastcdc's iterator and chunks hold buffer exports: keep them inside this frame.
        for start, length in [(c.offset, c.length) for c in self._chunker().cut_buf(view)]:
            with view[start : start + length] as piece:
                whole.update(piece)
                hexid = hashlib.sha256(piece).hexdigest()
            chunks.append(hexid)
            found.append((hexid, ChunkSource(source, start, length)))
        self._record(found)
        return PackedFile(whole.hexdigest(), len(view), tuple(chunks), facts, stamp)


class _Compressor:
    """Pass 2, one object per call from worker threads: read its bytes again and compress them."""

    def __init__(self, sources: Mapping[str, ChunkSource], level: int) -> None:
        self.sources = sources
        self.level = level
        self._local = threading.local()
        self._lock = threading.Lock()
        self._fds: set[int] = set()

    def close(self) -> None:
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()

    def __call__(self, object_id: str) -> bytes:
        local = self._local
        if getattr(local, "zstd", None) is None:
            local.zstd = zstandard.ZstdCompressor(
                level=self.level, write_content_size=True, write_checksum=False
            )
            local.path, local.fd = None, -1
        source = self.sources[object_id]
        if local.path != source.path:  # objects come in file order: keep the last file open
            with self._lock:
                if local.fd >= 0:
                    self._fds.discard(local.fd)
                    os.close(local.fd)
                local.fd = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
                self._fds.add(local.fd)
            local.path = source.path
        data = os.pread(local.fd, source.length, source.offset)
        if len(data) != source.length:
            raise CcsError("file changed while it was being packed", where=source.path)
        return local.zstd.compress(data)


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
) -> Path:
    """Pack *tree* into ``<output_dir>/<name>-<version>-<release>.<arch>.ccs`` (atomically) and return it.

    component_rules: a recipe's [components] table (component -> globs, plus "exclude").
    scriptlets: pre_install, post_install, pre_remove, post_remove -> shell text.
    provenance: recipe hash, source checksums, derivation key, builder ... (text/int/bool values).
    workers: threads for chunking and compression (default: cores + 1).
    preserve_owner: record the tree's uid/gid instead of 0:0.
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
        scanner = _Scanner(splitter)
        # Big files first so the last worker is not left alone with a giant.
        order = sorted((i for i in items if i.type == "file"), key=lambda i: -i.size)
        with ThreadPoolExecutor(workers) as pool:
            results = [pair for pairs in pool.map(scanner.scan, order) for pair in pairs]
        items = _merge_items(items, [item for item, _ in results])
        packed = {item.path: p for item, p in results}
        manifest, records = _manifest(items, packed, meta, rules, scripts, provenance, source_date_epoch)
        manifest_bytes = encode_manifest(manifest, records)
        signature = encode_signature(key, manifest_bytes)
        target = output_dir / f"{manifest.nevra}.ccs"
        compressor = _Compressor(scanner.sources, compression_level)
        with atomic_writer(target, 0o644) as out, contextlib.closing(compressor):
            _write_archive(
                out,
                manifest_bytes,
                signature,
                object_order(manifest.files),
                compressor,
                source_date_epoch,
                workers,
            )
            for item, p in results:
                if _stamp(os.stat(item.source)) != p.stamp:
                    raise CcsError("file changed while it was being packed", where=item.source)
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
) -> tuple[Manifest, list[bytes]]:
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
    records = [encode_file(e) for e in entries]
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


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_archive(
    out: Any,
    manifest: bytes,
    signature: bytes,
    order: list[str],
    compress: _Compressor,
    epoch: int,
    workers: int,
) -> None:
    """Write the archive through the raw fd while workers compress the next objects (in order)."""
    out.flush()
    fd = out.fileno()
    offset = 0
    for name, data in (("MANIFEST", manifest), ("MANIFEST.sig", signature)):
        block = make_header(name, len(data), epoch) + data + padding(len(data))
        _write_all(fd, block)
        offset += len(block)
    pending: deque[tuple[str, Future[bytes]]] = deque()
    ids = iter(order)
    window = 8 * workers + 8  # bounded: at most this many compressed objects wait in memory
    with ThreadPoolExecutor(workers) as pool:
        try:
            for object_id in itertools.islice(ids, window):
                pending.append((object_id, pool.submit(compress, object_id)))
            while pending:
                object_id, future = pending.popleft()
                blob = future.result()
                following = next(ids, None)
                if following is not None:
                    pending.append((following, pool.submit(compress, following)))
                block = make_header(f"objects/{object_id[:2]}/{object_id[2:]}", len(blob), epoch)
                _write_all(fd, block + blob + padding(len(blob)))
                offset += BLOCK + len(blob) + len(padding(len(blob)))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _write_all(fd, end_of_archive(offset))
