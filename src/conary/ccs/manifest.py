"""The MANIFEST entry: canonical CBOR encoding and strict decoding with every format-1 check."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import cbor2

from conary.ccs.components import COMPONENT_NAME
from conary.ccs.errors import CcsVerifyError
from conary.ccs.limits import CHUNK_MAX, CHUNK_THRESHOLD, Limits
from conary.ccs.merkle import content_root, merkle_root
from conary.ccs.model import (
    DEPENDENCY_KINDS,
    FILE_TYPES,
    FORMAT_VERSION,
    METADATA_KEYS,
    SCRIPTLET_NAMES,
    Component,
    Dependency,
    FileEntry,
    Manifest,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TOP_KEYS = frozenset(
    {
        "format",
        "name",
        "version",
        "release",
        "arch",
        "metadata",
        "files",
        "components",
        "provides",
        "requires",
        "scriptlets",
        "provenance",
        "content_root",
        "source_date_epoch",
    }
)
FILE_KEYS = frozenset(
    {"path", "type", "mode", "uid", "gid", "size", "sha256", "chunks", "target", "component", "config"}
)
COMPONENT_KEYS = frozenset({"name", "default", "root"})
DEPENDENCY_KEYS = frozenset({"kind", "name", "version"})
_MAX_ID = 2**32 - 1
_CBOR_SEMANTIC_TAGS = [*range(0, 65), 100, 256, 258, 260, 261, 1004, 43000, 55799]


# ---------------------------------------------------------------- encoding


def canonical_order(keys: frozenset[str]) -> tuple[str, ...]:
    """Map keys in canonical CBOR order: shorter first, then bytewise (RFC 8949 §4.2.1)."""
    return tuple(sorted(keys, key=lambda k: (len(k.encode()), k.encode())))


# Maps we emit are built in canonical key order, so cbor2's fast non-sorting encoder produces
# canonical bytes (integers and lengths are always shortest-form). Free-form maps (metadata,
# scriptlets, provenance) go through cbor2's canonical mode.
FILE_ORDER = canonical_order(FILE_KEYS)
TOP_ORDER = canonical_order(TOP_KEYS)


def _file_map(
    path: str, type: str, mode: int, uid: int, gid: int, size: int, sha256: str, chunks: tuple[str, ...],
    target: str, component: str, config: bool,
) -> dict[str, Any]:  # fmt: skip
    # written in FILE_ORDER (checked below): one record per file of every package, so no re-sorting
    return {
        "gid": gid,
        "uid": uid,
        "mode": mode,
        "path": path,
        "size": size,
        "type": type,
        "chunks": [bytes.fromhex(c) for c in chunks],
        "config": config,
        "sha256": bytes.fromhex(sha256),
        "target": target,
        "component": component,
    }


def file_to_cbor(f: FileEntry) -> dict[str, Any]:
    return _file_map(
        f.path, f.type, f.mode, f.uid, f.gid, f.size, f.sha256, f.chunks, f.target, f.component, f.config
    )


if tuple(file_to_cbor(FileEntry("x", "file", 0)).keys()) != FILE_ORDER:  # pragma: no cover
    raise AssertionError("file_to_cbor must list its keys in canonical order")


def encode_file(f: FileEntry) -> bytes:
    """Canonical CBOR of one file record (also the Merkle leaf of the file)."""
    return cbor2.dumps(file_to_cbor(f))


def encode_regular_file(
    path: str, mode: int, uid: int, gid: int, size: int, sha256: str, chunks: tuple[str, ...],
    component: str, config: bool,
) -> bytes:  # fmt: skip
    """encode_file() of a regular file, from its fields: packing encodes thousands and needs no
    FileEntry for them."""
    return cbor2.dumps(_file_map(path, "file", mode, uid, gid, size, sha256, chunks, "", component, config))


def dependency_to_cbor(d: Dependency) -> dict[str, str]:
    return {"kind": d.kind, "name": d.name, "version": d.version or ""}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def manifest_to_cbor(m: Manifest, *, with_files: bool = True) -> dict[str, Any]:
    """The manifest as plain CBOR data (keys in canonical order)."""
    values = {
        "format": m.format_version,
        "name": m.name,
        "version": m.version,
        "release": m.release,
        "arch": m.arch,
        "metadata": {k: m.metadata.get(k, "") for k in canonical_order(frozenset(METADATA_KEYS))},
        "files": [file_to_cbor(f) for f in m.files] if with_files else [],
        "components": [
            {"name": c.name, "root": bytes.fromhex(c.root), "default": c.default} for c in m.components
        ],
        "provides": [dependency_to_cbor(d) for d in m.provides],
        "requires": [dependency_to_cbor(d) for d in m.requires],
        "scriptlets": dict(m.scriptlets),
        "provenance": _plain(m.provenance),
        "content_root": bytes.fromhex(m.content_root),
        "source_date_epoch": m.source_date_epoch,
    }
    return {k: values[k] for k in TOP_ORDER}


def _array_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 + n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([0x80 + info]) + n.to_bytes(width, "big")
    raise ValueError("array too long")


def encode_manifest(m: Manifest, file_records: list[bytes] | None = None) -> bytes:
    """The exact MANIFEST bytes: canonical CBOR (RFC 8949 §4.2.1 core deterministic encoding).

    file_records: the already encoded file maps (encode_file), in order, to avoid encoding twice.
    """
    data = manifest_to_cbor(m) if file_records is None else manifest_to_cbor(m, with_files=False)
    parts = [bytes([0xA0 + len(TOP_ORDER)])]
    for key in TOP_ORDER:
        parts.append(cbor2.dumps(key))
        if key == "files" and file_records is not None:
            parts.append(_array_head(len(file_records)))
            parts.extend(file_records)
            continue
        free_form = key in ("metadata", "scriptlets", "provenance")
        parts.append(cbor2.dumps(data[key], canonical=free_form))
    return b"".join(parts)


# ---------------------------------------------------------------- decoding


def _fail(what: str, where: str = "MANIFEST", hint: str | None = None) -> CcsVerifyError:
    return CcsVerifyError(what, where=where, hint=hint)


def _reject_tag(*_args: object) -> Any:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed in a manifest")


def _read_head(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument, next position) of the CBOR item at pos; definite lengths only."""
    if pos >= len(buf):
        raise _fail("manifest ends early (truncated CBOR)")
    initial = buf[pos]
    major, info = initial >> 5, initial & 31
    if info < 24:
        return major, info, pos + 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if width is None or pos + 1 + width > len(buf):
        raise _fail("manifest is not well-formed CBOR")
    return major, int.from_bytes(buf[pos + 1 : pos + 1 + width], "big"), pos + 1 + width


def precheck_entry_budget(buf: bytes, limits: Limits) -> None:
    """Reject a manifest that lists too many files before anything is decoded or allocated.

    Canonical key order puts "arch" and "name" (text values) before "files", so the count is found
    by reading a few heads.
    """
    major, count, pos = _read_head(buf, 0)
    if major != 5:
        raise _fail("manifest is not a CBOR map")
    for _ in range(min(count, 3)):
        kmajor, klen, pos = _read_head(buf, pos)
        if kmajor != 3:
            return
        key = buf[pos : pos + klen]
        pos += klen
        vmajor, varg, pos = _read_head(buf, pos)
        if key == b"files":
            if vmajor != 4:
                return
            if varg > limits.max_entries:
                raise _fail(
                    f"manifest lists {varg} entries, over the budget of {limits.max_entries}",
                    hint="a package this large is refused; split it",
                )
            if varg > len(buf) - pos:
                raise _fail(f"manifest claims {varg} entries but holds only {len(buf) - pos} more bytes")
            return
        if vmajor not in (2, 3):
            return
        pos += varg


def decode_manifest(data: bytes, limits: Limits | None = None) -> Manifest:
    """Decode and check MANIFEST bytes (already authenticated). Raises CcsVerifyError on any flaw."""
    limits = limits or Limits()
    if len(data) > limits.max_manifest_bytes:
        raise _fail(f"manifest is {len(data)} bytes, over the budget of {limits.max_manifest_bytes}")
    precheck_entry_budget(data, limits)
    try:
        raw = cbor2.loads(
            data,
            tag_hook=_reject_tag,
            semantic_decoders=dict.fromkeys(_CBOR_SEMANTIC_TAGS, _reject_tag),
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
            max_depth=8,
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as err:
        raise _fail(f"manifest is not valid CBOR: {err}")
    manifest, records = _manifest_from_cbor(raw, limits)
    if encode_manifest(manifest, records) != data:
        raise _fail("manifest is not in canonical CBOR form (re-encoding differs)")
    return manifest


def decode_stored_manifest(data: bytes) -> Manifest:
    """Decode MANIFEST bytes that decode_manifest accepted before they were stored (the runtime's
    database keeps only verified manifests, under their digest). Same result, without re-checking
    budgets, Merkle roots and canonical form: a 5,000-file package decodes in a fifth of the time,
    which every runtime command pays at start. `system verify` still checks the stored bytes."""
    top = cbor2.loads(data)
    files = tuple(
        FileEntry(
            f["path"],
            f["type"],
            f["mode"],
            f["uid"],
            f["gid"],
            f["size"],
            f["sha256"].hex() if f["sha256"] else "",
            tuple(c.hex() for c in f["chunks"]),
            f["target"],
            f["component"],
            f["config"],
        )
        for f in top["files"]
    )
    return Manifest(
        format_version=top["format"],
        name=top["name"],
        version=top["version"],
        release=top["release"],
        arch=top["arch"],
        metadata=dict(top["metadata"]),
        files=files,
        components=tuple(Component(c["name"], c["default"], c["root"].hex()) for c in top["components"]),
        provides=tuple(Dependency(d["kind"], d["name"], d["version"]) for d in top["provides"]),
        requires=tuple(Dependency(d["kind"], d["name"], d["version"]) for d in top["requires"]),
        scriptlets=dict(top["scriptlets"]),
        provenance=dict(top["provenance"]),
        content_root=top["content_root"].hex(),
        source_date_epoch=top["source_date_epoch"],
    )


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    # bool is an int subclass; integers must not be booleans and vice versa
    if isinstance(value, bool) and kind is int:
        raise _fail(f"{what} must be an unsigned integer, got a boolean", where)
    if not isinstance(value, kind):
        raise _fail(f"{what} has the wrong type ({type(value).__name__})", where)
    return value


def _keys(value: Any, expected: frozenset[str], where: str, what: str) -> dict[str, Any]:
    _expect(value, dict, where, what)
    missing = expected - value.keys()
    extra = value.keys() - expected
    if missing:
        raise _fail(f"{what} lacks key(s) {', '.join(sorted(missing))}", where)
    if extra:
        raise _fail(f"{what} has unknown key(s) {', '.join(sorted(map(str, extra)))}", where)
    return value


def _uint(value: Any, where: str, what: str, maximum: int) -> int:
    _expect(value, int, where, what)
    if value < 0 or value > maximum:
        raise _fail(f"{what} {value} is out of range (0..{maximum})", where)
    return value


def _text(value: Any, where: str, what: str, *, nonempty: bool = False) -> str:
    _expect(value, str, where, what)
    if nonempty and not value:
        raise _fail(f"{what} is empty", where)
    if "\x00" in value:
        raise _fail(f"{what} contains a NUL character", where)
    return value


def _digest(value: Any, where: str, what: str) -> str:
    _expect(value, bytes, where, what)
    if len(value) != 32:
        raise _fail(f"{what} must be 32 bytes, got {len(value)}", where)
    return value.hex()


def check_path(path: str, limits: Limits) -> None:
    if not path:
        raise _fail("empty path")
    if len(path.encode()) > limits.max_path_bytes:
        raise _fail(f"path is longer than {limits.max_path_bytes} bytes", path[:80])
    if path.startswith("/"):
        raise _fail("absolute path (paths are relative to the root, without a leading '/')", path)
    parts = path.split("/")
    if ".." in parts:
        raise _fail("path contains a '..' component", path)
    if any(p in ("", ".") for p in parts):
        raise _fail("path is not normalized (empty or '.' component)", path)


def _file(raw: Any, index: int, limits: Limits) -> FileEntry:
    where = f"MANIFEST files[{index}]"
    rec = _keys(raw, FILE_KEYS, where, "file record")
    path = _text(rec["path"], where, "path")
    check_path(path, limits)
    where = path
    ftype = _text(rec["type"], where, "type")
    if ftype not in FILE_TYPES:
        raise _fail(f"unknown file type {ftype!r} (expected one of {', '.join(FILE_TYPES)})", where)
    mode = _uint(rec["mode"], where, "mode", 0o7777)
    uid = _uint(rec["uid"], where, "uid", _MAX_ID)
    gid = _uint(rec["gid"], where, "gid", _MAX_ID)
    size = _uint(rec["size"], where, "size", 2**64 - 1)
    _expect(rec["sha256"], bytes, where, "sha256")
    sha = rec["sha256"].hex() if rec["sha256"] else ""
    chunks_raw = _expect(rec["chunks"], list, where, "chunks")
    chunks = tuple(_digest(c, where, "chunk id") for c in chunks_raw)
    target = _text(rec["target"], where, "target")
    component = _text(rec["component"], where, "component", nonempty=True)
    if not COMPONENT_NAME.match(component):
        raise _fail(f"invalid component name {component!r}", where)
    config = _expect(rec["config"], bool, where, "config")
    if ftype == "file":
        if len(sha) != 64:
            raise _fail("a regular file needs a 32-byte sha256", where)
        if size > limits.max_file_bytes:
            raise _fail(
                f"file claims {size} bytes, over the per-file budget of {limits.max_file_bytes}", where
            )
        if size == 0:
            if chunks or sha != EMPTY_SHA256:
                raise _fail("an empty file has no chunks and the sha256 of empty content", where)
        elif size < CHUNK_THRESHOLD:
            if len(chunks) != 1 or chunks[0] != sha:
                raise _fail(
                    f"a file under {CHUNK_THRESHOLD} bytes is one object whose id is its sha256", where
                )
        elif size > len(chunks) * CHUNK_MAX:
            raise _fail(
                f"file claims {size} bytes but its {len(chunks)} chunk(s) hold at most "
                f"{len(chunks) * CHUNK_MAX}",
                where,
            )
        elif len(chunks) > size:
            raise _fail(f"file of {size} bytes lists {len(chunks)} chunks", where)
        if target:
            raise _fail("a regular file has no symlink target", where)
    else:
        if size or sha or chunks:
            raise _fail(f"a {ftype} has no size, sha256 or chunks", where)
        if config:
            raise _fail(f"a {ftype} cannot be a config file", where)
    if ftype == "symlink":
        if not target:
            raise _fail("symlink has an empty target", where)
        if mode != 0o777:
            raise _fail("symlink mode must be 0777", where)
        if len(target.encode()) > limits.max_path_bytes:
            raise _fail("symlink target is too long", where)
        if not target.startswith("/") and symlink_escapes(path, target):
            raise _fail(f"symlink points out of the root ({target})", where)
    elif ftype == "dir" and target:
        raise _fail("a directory has no symlink target", where)
    return FileEntry(path, ftype, mode, uid, gid, size, sha, chunks, target, component, config)


def symlink_escapes(path: str, target: str) -> bool:
    """True if a relative target, resolved lexically from the link's directory, leaves the root."""
    depth = len(path.split("/")) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _dependency(raw: Any, where: str) -> Dependency:
    rec = _keys(raw, DEPENDENCY_KEYS, where, "dependency")
    kind = _text(rec["kind"], where, "dependency kind")
    if kind not in DEPENDENCY_KINDS:
        raise _fail(f"unknown dependency kind {kind!r} (expected {', '.join(DEPENDENCY_KINDS)})", where)
    return Dependency(
        kind,
        _text(rec["name"], where, "dependency name", nonempty=True),
        _text(rec["version"], where, "version"),
    )


def _provenance_value(value: Any, where: str, depth: int = 0) -> Any:
    if isinstance(value, str | int | bool):
        return value
    if depth < 2 and isinstance(value, list):
        return [_provenance_value(v, where, depth + 1) for v in value]
    if depth < 2 and isinstance(value, dict):
        return {
            _text(k, where, "provenance key"): _provenance_value(v, where, depth + 1)
            for k, v in value.items()
        }
    raise _fail("provenance values are text, integers, booleans, or lists/maps of them", where)


def _manifest_from_cbor(raw: Any, limits: Limits) -> tuple[Manifest, list[bytes]]:
    top = _keys(raw, TOP_KEYS, "MANIFEST", "manifest")
    version = _uint(top["format"], "MANIFEST", "format", 2**32)
    if version != FORMAT_VERSION:
        raise _fail(
            f"format version {version} is not supported (this reader knows format {FORMAT_VERSION})",
            hint="upgrade conary" if version > FORMAT_VERSION else None,
        )
    ident = {k: _text(top[k], "MANIFEST", k, nonempty=True) for k in ("name", "version", "release", "arch")}
    for key, value in ident.items():
        if "/" in value or any(c.isspace() for c in value):
            raise _fail(f"{key} {value!r} contains '/' or whitespace")
    meta = _keys(top["metadata"], frozenset(METADATA_KEYS), "MANIFEST", "metadata")
    metadata = {k: _text(meta[k], "MANIFEST", f"metadata.{k}") for k in METADATA_KEYS}

    files_raw = _expect(top["files"], list, "MANIFEST", "files")
    if len(files_raw) > limits.max_entries:
        raise _fail(f"manifest lists {len(files_raw)} entries, over the budget of {limits.max_entries}")
    files = tuple(_file(rec, i, limits) for i, rec in enumerate(files_raw))
    _check_tree(files, limits)

    comps_raw = _expect(top["components"], list, "MANIFEST", "components")
    components = []
    for i, rec in enumerate(comps_raw):
        where = f"MANIFEST components[{i}]"
        rec = _keys(rec, COMPONENT_KEYS, where, "component")
        name = _text(rec["name"], where, "component name", nonempty=True)
        components.append(
            Component(
                name, _expect(rec["default"], bool, where, "default"), _digest(rec["root"], where, "root")
            )
        )
    names = [c.name for c in components]
    if names != sorted(set(names)):
        raise _fail("components are not sorted by name or repeat a name")
    used = sorted({f.component for f in files})
    if names != used:
        raise _fail(f"components listed ({', '.join(names)}) differ from those files use ({', '.join(used)})")
    records = [encode_file(f) for f in files]
    grouped: dict[str, list[bytes]] = {}
    for entry, record in zip(files, records, strict=True):
        grouped.setdefault(entry.component, []).append(record)
    for comp in components:
        if comp.root != merkle_root(grouped[comp.name]):
            raise _fail(f"Merkle root of component {comp.name} does not match its files")
    root = _digest(top["content_root"], "MANIFEST", "content_root")
    if root != content_root(components):
        raise _fail("content_root does not match the component roots")

    deps: dict[str, tuple[Dependency, ...]] = {}
    for key in ("provides", "requires"):
        items = _expect(top[key], list, "MANIFEST", key)
        if len(items) > limits.max_dependencies:
            raise _fail(f"{len(items)} {key}, over the budget of {limits.max_dependencies}")
        parsed = [_dependency(d, f"MANIFEST {key}[{i}]") for i, d in enumerate(items)]
        if parsed != sorted(set(parsed), key=dependency_sort_key):
            raise _fail(f"{key} are not sorted or repeat an entry")
        deps[key] = tuple(parsed)

    scripts = _expect(top["scriptlets"], dict, "MANIFEST", "scriptlets")
    for name, text in scripts.items():
        if name not in SCRIPTLET_NAMES:
            raise _fail(f"unknown scriptlet {name!r} (expected {', '.join(SCRIPTLET_NAMES)})")
        _text(text, "MANIFEST", f"scriptlets.{name}")
        if len(text.encode()) > limits.max_scriptlet_bytes:
            raise _fail(f"scriptlet {name} is over the budget of {limits.max_scriptlet_bytes} bytes")
    provenance = _expect(top["provenance"], dict, "MANIFEST", "provenance")
    provenance = {
        _text(k, "MANIFEST", "provenance key"): _provenance_value(v, f"provenance.{k}")
        for k, v in provenance.items()
    }
    manifest = Manifest(
        format_version=version,
        name=ident["name"],
        version=ident["version"],
        release=ident["release"],
        arch=ident["arch"],
        metadata=metadata,
        files=files,
        components=tuple(components),
        provides=deps["provides"],
        requires=deps["requires"],
        scriptlets=dict(scripts),
        provenance=provenance,
        content_root=root,
        source_date_epoch=_uint(top["source_date_epoch"], "MANIFEST", "source_date_epoch", 2**63 - 1),
    )
    return manifest, records


def dependency_sort_key(d: Dependency) -> tuple[int, str, str]:
    return (DEPENDENCY_KINDS.index(d.kind), d.name, d.version)


def path_sort_key(path: str) -> bytes:
    return path.encode()


def _check_tree(files: tuple[FileEntry, ...], limits: Limits) -> None:
    """Sorted unique paths, nothing beneath a symlink or a regular file, bounded total size."""
    kinds: dict[str, str] = {}
    previous = b""
    total = 0
    for f in files:
        key = path_sort_key(f.path)
        if f.path in kinds:
            raise _fail("duplicate path", f.path)
        if key < previous:
            raise _fail("files are not sorted by path (byte order)", f.path)
        previous = key
        parent = f.path
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            kind = kinds.get(parent)
            if kind == "symlink":
                raise _fail(f"path goes through the symlink {parent}", f.path)
            if kind == "file":
                raise _fail(f"path lies beneath the regular file {parent}", f.path)
        kinds[f.path] = f.type
        total += f.size
    if total > limits.max_total_bytes:
        raise _fail(f"package unpacks to {total} bytes, over the budget of {limits.max_total_bytes}")
