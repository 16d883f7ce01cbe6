"""Build a .ccs package from a file tree: scan, split debug info, chunk, compress, sign, write.

Output is a function of the tree's content, modes and the given metadata and SOURCE_DATE_EPOCH only:
mtimes, inode order, ownership (unless preserve_owner) and temp paths never reach the package.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from conary.ccs.components import ComponentRules, is_default_component
from conary.ccs.debuginfo import TreeItem, missing_dirs
from conary.ccs.deps import NO_FACTS, FileFacts, dependencies_from_facts, merge_dependencies
from conary.ccs.errors import CcsError, CcsInputError
from conary.ccs.keys import SigningKey, as_signing_key
from conary.ccs.limits import MiB
from conary.ccs.manifest import encode_file, encode_manifest, symlink_escapes
from conary.ccs.merkle import content_root, leaf_hash, root_of_leaves
from conary.ccs.model import (
    FORMAT_VERSION,
    METADATA_KEYS,
    SCRIPTLET_NAMES,
    Component,
    Dependency,
    FileEntry,
    Manifest,
    PackageMeta,
)
from conary.ccs.packer import ObjectRun, PackConfig, PackedFile, PlanStep, SpooledRange, SpooledRun
from conary.ccs.scheduler import InOrderCompression, Progress, packing_workers, survey
from conary.ccs.sign import encode_signature
from conary.ccs.tarfmt import MAX_MTIME, end_of_archive, make_header, padding
from conary.ccs.workdir import build_workdir
from conary.fsutil import BackgroundSync, atomic_writer, punch_hole

DEFAULT_COMPRESSION_LEVEL = 1  # zstd level; 3 packs ~5% smaller for ~1.5x the compression CPU
SPLIT_FILE_BYTES = 32 * MiB  # files this big are hashed and compressed in segments on every worker
SEGMENT_BYTES = 8 * MiB
# Files smaller than this are compressed by the survey, from the bytes it has just read. Bigger ones
# wait for the compress pass: its work is what the flushing of the package to disk overlaps with.
EARLY_FILE_BYTES = 2 * MiB
_SYNC_BYTES = 16 * MiB  # flush the package to disk in the background after each this many bytes
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~^-]*$")


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
    # The walk runs before any worker has work: every microsecond per entry here is paid in full.
    excluded = rules.excluded if rules.exclude else None
    items: list[TreeItem] = []
    append = items.append
    stack = [("", str(tree))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        prefix = f"{rel_dir}/" if rel_dir else ""
        with os.scandir(abs_dir) as entries:
            for entry in entries:
                name = entry.name
                if not name.isascii():
                    _check_utf8(name, entry.path)
                rel = prefix + name
                if excluded is not None and excluded(rel):
                    continue
                st = entry.stat(follow_symlinks=False)
                st_mode = st.st_mode
                uid, gid = (st.st_uid, st.st_gid) if preserve_owner else (0, 0)
                if stat.S_ISREG(st_mode):
                    append(TreeItem(rel, "file", st_mode & 0o7777, uid, gid, entry.path, "", st.st_size))
                elif stat.S_ISDIR(st_mode):
                    append(TreeItem(rel, "dir", st_mode & 0o7777, uid, gid, entry.path))
                    stack.append((rel, entry.path))
                elif stat.S_ISLNK(st_mode):
                    target = _link_target(rel, entry.path)
                    append(TreeItem(rel, "symlink", 0o777, uid, gid, entry.path, target))
                else:
                    raise CcsInputError(
                        "unsupported file type (device, fifo or socket) in package tree",
                        where=entry.path,
                        hint="create device nodes in a post_install scriptlet instead",
                    )
    items.sort(key=lambda i: i.path.encode())
    return items


def _check_utf8(name: str, where: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise CcsInputError("file name is not valid UTF-8", where=where) from None


def _link_target(rel: str, source: str) -> str:
    target = os.readlink(source)
    if not target:
        raise CcsInputError("symlink with an empty target", where=source)
    if not target.startswith("/") and symlink_escapes(rel, target):
        raise CcsInputError(
            f"symlink points out of the package root ({target})",
            where=source,
            hint="use an absolute target, which installers resolve inside the root",
        )
    return target


# ---------------------------------------------------------------- the package


def object_plan(files: Iterable[PackedFile], early: Mapping[str, SpooledRange]) -> Iterator[PlanStep]:
    """The archive's objects in format-1 order (first use, walking *files* in manifest order and
    their chunks in order): runs of objects that lie one after another in a source file, still to
    be compressed, and ranges of records the survey compressed already (*early*), joined where
    they lie one after another in a spool."""
    seen: set[str] = set()
    spooled: SpooledRun | None = None  # early records that run on without a break so far
    for p in files:
        objects: list[tuple[str, int, int]] = []
        offset = 0
        for chunk, length in zip(p.chunks, p.lengths, strict=True):
            if chunk in seen:
                if objects:
                    yield ObjectRun(p.item.source, p.stamp, tuple(objects))
                    objects = []
            else:
                seen.add(chunk)
                record = early.get(chunk)
                if record is None:
                    if spooled is not None:
                        yield spooled
                        spooled = None
                    objects.append((chunk, offset, length))
                else:
                    if objects:
                        yield ObjectRun(p.item.source, p.stamp, tuple(objects))
                        objects = []
                    name, start, size = record
                    if spooled is not None and spooled.spool == name and spooled.end == start:
                        spooled = spooled._replace(length=spooled.length + size, input=spooled.input + length)
                    else:
                        if spooled is not None:
                            yield spooled
                        spooled = SpooledRun(name, start, size, length)
            offset += length
        if objects:
            yield ObjectRun(p.item.source, p.stamp, tuple(objects))
    if spooled is not None:
        yield spooled


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
    progress: Progress | None = None,
    extra_provides: Iterable[Dependency] = (),
    extra_requires: Iterable[Dependency] = (),
    drop_requires: Iterable[Dependency] = (),
) -> Path:
    """Pack *tree* into ``<output_dir>/<name>-<version>-<release>.<arch>.ccs`` (atomically) and return it.

    component_rules: a recipe's [components] table (component -> globs, plus "exclude").
    scriptlets: pre_install, post_install, pre_remove, post_remove -> shell text.
    provenance: recipe hash, source checksums, derivation key, builder ... (text/int/bool values).
    workers: processes for chunking, hashing and compression (default: one per core).
    preserve_owner: record the tree's uid/gid instead of 0:0.
    extra_provides / extra_requires: stated dependencies added to the scanned ones (an imported
    package's own metadata, say); a requirement the package satisfies itself is still dropped.
    drop_requires: scanned requirements to leave out, by kind and name (the caller knows they are
    not for this system: the interpreter of a cross toolchain's target libraries, say); the name
    "*" leaves out every scanned requirement of its kind.
    progress: called from this thread as (phase, bytes done, bytes in all), phase "survey" (reading
    and hashing), then "compress" (compressing and writing; its total is an upper bound).
    Compressed objects wait in spool files in a temporary directory beside the output.
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

    stated = (tuple(extra_provides), tuple(extra_requires), tuple(drop_requires))
    items = scan_tree(tree, rules, preserve_owner=preserve_owner)
    try:
        return _pack(items, output_dir, meta, key, rules, scripts, provenance, source_date_epoch,
                     split_debug, compression_level, workers, progress, stated)  # fmt: skip
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CcsError(
            "no space left for the package",
            where=str(output_dir),
            hint="while it is built, a package needs about twice its size free beside the output; "
            "free some space, then build again",
        ) from exc


def _pack(
    items: list[TreeItem],
    output_dir: Path,
    meta: PackageMeta,
    key: SigningKey,
    rules: ComponentRules,
    scripts: Mapping[str, str],
    provenance: Mapping[str, Any] | None,
    source_date_epoch: int,
    split_debug: bool,
    compression_level: int,
    workers: int,
    progress: Progress | None,
    stated: tuple[tuple[Dependency, ...], ...] = ((), (), ()),
) -> Path:
    regular = [i for i in items if i.type == "file"]
    with build_workdir(output_dir) as work:
        config = PackConfig(
            str(work),
            compression_level,
            source_date_epoch,
            split_debug,
            rules,
            SPLIT_FILE_BYTES,
            SEGMENT_BYTES,
            EARLY_FILE_BYTES,
        )
        with packing_workers(config, workers, sum(i.size for i in regular)) as pool:
            surveyed = survey(pool, regular, config, progress)
            packed = _kept_files(surveyed.files, {i.path for i in items})
            items = _merge_items(items, [p.item for p in packed])
            by_path = {p.item.path: p for p in packed}
            # the workers compress while the manifest is built and signed
            files_in_order = [by_path[i.path] for i in items if i.type == "file"]
            upper_bound = sum(p.item.size for p in packed)
            plan = object_plan(files_in_order, surveyed.early)
            compression = InOrderCompression(pool, plan, progress, upper_bound)
            manifest, records = _manifest(
                items, by_path, meta, rules, scripts, provenance, source_date_epoch, stated
            )
            manifest_bytes = encode_manifest(manifest, records)
            signature = encode_signature(key, manifest_bytes)
            target = output_dir / f"{manifest.nevra}.ccs"
            with atomic_writer(target, 0o644) as out:
                _write_archive(
                    out, manifest_bytes, signature, compression, Path(work), source_date_epoch, pool.finish
                )
    return target


def _kept_files(files: list[PackedFile], tree_paths: set[str]) -> list[PackedFile]:
    """Every packed file, less the debug files the tree already has and all but one of those that
    share a build-id (the one split from the first path in byte order, whichever worker ran first)."""
    kept = [f for f in files if not f.debug_of]
    seen = set(tree_paths)
    for f in sorted((f for f in files if f.debug_of), key=lambda f: f.debug_of.encode()):
        if f.item.path not in seen:
            seen.add(f.item.path)
            kept.append(f)
    return kept


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
    stated: tuple[tuple[Dependency, ...], ...] = ((), (), ()),
) -> tuple[Manifest, list[bytes]]:
    """The manifest, less its files, and the files' records in order: encode_manifest() takes them
    as they are. The workers encoded and hashed the regular files' records; only directories and
    symlinks are encoded here."""
    records: list[bytes] = []
    leaves: dict[str, list[bytes]] = {}
    facts: dict[str, FileFacts] = {}
    for item in items:
        if item.type == "file":
            p = packed[item.path]
            record, leaf, component = p.record, p.leaf, p.component
            if p.facts is not NO_FACTS:
                facts[item.path] = p.facts
        else:
            component = rules.component_of(item.path, is_symlink=item.type == "symlink")
            entry = FileEntry(
                item.path, item.type, item.mode, item.uid, item.gid, 0, "", (), item.target, component, False
            )
            record = encode_file(entry)
            leaf = leaf_hash(record)
        records.append(record)
        leaves.setdefault(component, []).append(leaf)
    components = tuple(
        Component(n, is_default_component(n), root_of_leaves(leaves[n])) for n in sorted(leaves)
    )
    provides, requires = dependencies_from_facts(
        items, facts, name=meta.name, version=meta.version, release=meta.release
    )
    if any(stated):
        provides, requires = merge_dependencies(provides, requires, *stated)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        name=meta.name,
        version=meta.version,
        release=meta.release,
        arch=meta.arch,
        metadata={k: getattr(meta, k) for k in METADATA_KEYS},
        files=(),
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


def _write_archive(
    out: Any,
    manifest: bytes,
    signature: bytes,
    spooled: Iterable[tuple[str, int, int]],
    spool_dir: Path,
    epoch: int,
    while_flushing: Callable[[], None],
) -> None:
    """Write the archive: manifest, signature, then the objects' tar records, copied from the
    workers' spools in archive order as each compress task finishes. The last flush to disk
    starts before this returns; *while_flushing* runs meanwhile, and the spools are removed."""
    out.flush()
    fd = out.fileno()
    prefix: list[bytes] = []
    for name, data in (("MANIFEST", manifest), ("MANIFEST.sig", signature)):
        prefix += (make_header(name, len(data), epoch), data, padding(len(data)))
    _write_all(fd, prefix)
    offset = flushed = sum(len(b) for b in prefix)
    spools: dict[str, int] = {}
    try:
        with BackgroundSync(fd) as syncer:
            for spool, start, length in spooled:
                src = spools.get(spool)
                if src is None:
                    src = spools[spool] = os.open(spool_dir / spool, os.O_RDWR | os.O_CLOEXEC)
                _copy_range(src, fd, start, length)
                # free the copied records now, while workers still compress, not all at the end
                punch_hole(src, start, length)
                offset += length
                if offset - flushed >= _SYNC_BYTES:
                    syncer.request()
                    flushed = offset
            _write_all(fd, [end_of_archive(offset)])
            syncer.request()
            while_flushing()
            for spool in spools:
                os.unlink(spool_dir / spool)
    finally:
        for src in spools.values():
            os.close(src)


def _copy_range(src: int, dst: int, start: int, length: int) -> None:
    """Append src[start:start+length] to dst, in the kernel where it can."""
    while length:
        try:
            copied = os.copy_file_range(src, dst, length, start)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            copied = os.write(dst, os.pread(src, min(length, 8 * MiB), start))
        if copied <= 0:
            raise CcsError("object spool is shorter than expected", where="package build")
        start += copied
        length -= copied
