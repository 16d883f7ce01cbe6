"""The signed repository index: one JSON document listing every package in a repository.

A repository is a directory (local, or served over http) holding ``.ccs`` files beside two index
files:

    index.json       canonical JSON (sorted keys, no spaces, UTF-8), format "conary-repo-index" v1
    index.json.sig   canonical JSON {"algorithm": "ed25519", "key_id", "public_key", "signature"}

The signature is Ed25519 over the exact bytes of index.json, like a package's MANIFEST.sig. The
index is deterministic: the same packages give the same bytes, whoever builds it and when.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.ccs import CcsError, Dependency, PublicKey, SigningKey, open_package
from conary.errors import ConaryError, InputError
from conary.fsutil import atomic_write_bytes

INDEX_NAME = "index.json"
SIGNATURE_NAME = "index.json.sig"
INDEX_FORMAT = "conary-repo-index"
INDEX_FORMAT_VERSION = 1
MAX_INDEX_BYTES = 256 << 20  # refuse absurd downloads before parsing them


class RepoIndexError(ConaryError):
    """A repository index is missing, malformed, unsigned, untrusted or tampered with."""


@dataclass(frozen=True)
class IndexEntry:
    """One package of a repository, as its index describes it."""

    name: str
    version: str
    release: str
    arch: str
    filename: str  # relative to the repository base, no directories
    size: int
    sha256: str
    provides: tuple[Dependency, ...]
    requires: tuple[Dependency, ...]
    components: tuple[str, ...]
    default_components: tuple[str, ...]
    files: tuple[str, ...]  # paths of regular files and symlinks, for file/interpreter requirements
    summary: str = ""

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}"

    @property
    def evr(self) -> str:
        return f"{self.version}-{self.release}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "release": self.release,
            "arch": self.arch,
            "nevra": self.nevra,
            "file": self.filename,
            "size": self.size,
            "sha256": self.sha256,
            "provides": [[d.kind, d.name, d.version] for d in self.provides],
            "requires": [[d.kind, d.name, d.version] for d in self.requires],
            "components": list(self.components),
            "default_components": list(self.default_components),
            "files": list(self.files),
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexEntry:
        filename = str(data["file"])
        if "/" in filename or filename in ("", ".", ".."):
            raise ValueError(f"bad package file name {filename!r}")

        def deps(items: Iterable[Sequence[str]]) -> tuple[Dependency, ...]:
            return tuple(Dependency(str(k), str(n), str(v)) for k, n, v in items)

        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            release=str(data["release"]),
            arch=str(data["arch"]),
            filename=filename,
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            provides=deps(data["provides"]),
            requires=deps(data["requires"]),
            components=tuple(map(str, data["components"])),
            default_components=tuple(map(str, data["default_components"])),
            files=tuple(map(str, data["files"])),
            summary=str(data.get("summary", "")),
        )


@dataclass(frozen=True)
class RepoIndex:
    entries: tuple[IndexEntry, ...]
    signer_key_id: str


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_for_package(path: Path) -> IndexEntry:
    """Read and verify one .ccs file (integrity and self-signature) and describe it for the index."""
    try:
        with open_package(path) as package:
            manifest = package.manifest
    except CcsError as err:
        what = f"{err.where}: {err.what}" if err.where else err.what
        raise ConaryError(f"cannot index package: {what}", where=str(path), hint=err.hint)
    provides = set(manifest.provides)
    # Every package provides its own name, whether or not its manifest says so.
    provides.add(Dependency("package", manifest.name, f"{manifest.version}-{manifest.release}"))
    return IndexEntry(
        name=manifest.name,
        version=manifest.version,
        release=manifest.release,
        arch=manifest.arch,
        filename=path.name,
        size=path.stat().st_size,
        sha256=file_sha256(path),
        provides=tuple(sorted(provides)),
        requires=tuple(sorted(set(manifest.requires))),
        components=tuple(c.name for c in manifest.components),
        default_components=tuple(manifest.default_components),
        files=tuple(sorted(f.path for f in manifest.files if not f.is_dir)),
        summary=manifest.summary,
    )


def encode_index(entries: Iterable[IndexEntry]) -> bytes:
    ordered = sorted(entries, key=lambda e: (e.name, e.version, e.release, e.arch, e.filename))
    return canonical_json(
        {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "packages": [e.to_json() for e in ordered],
        }
    )


def sign_index(data: bytes, key: SigningKey) -> bytes:
    public = key.public_key
    return canonical_json(
        {
            "algorithm": "ed25519",
            "key_id": public.key_id,
            "public_key": public.raw.hex(),
            "signature": key.sign(data).hex(),
        }
    )


def write_index(
    directory: str | os.PathLike[str], key: SigningKey, *, dry_run: bool = False
) -> list[IndexEntry]:
    """Index every .ccs file in DIRECTORY and write index.json + index.json.sig atomically (under
    DRY_RUN: verify and index the packages, write nothing)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("not a directory", where=str(directory))
    entries = [entry_for_package(p) for p in sorted(directory.glob("*.ccs")) if p.is_file()]
    seen: dict[str, str] = {}
    for entry in entries:
        key_ = f"{entry.name} {entry.evr} {entry.arch}"
        if key_ in seen:
            raise ConaryError(
                f"two files hold the same package {entry.nevra}: {seen[key_]} and {entry.filename}",
                where=str(directory),
                hint="remove one of them",
            )
        seen[key_] = entry.filename
    if dry_run:
        return sorted(entries, key=lambda e: (e.name, e.version, e.release, e.arch, e.filename))
    data = encode_index(entries)
    # The signature goes first: a reader that finds a new index beside an old signature refuses it,
    # which is the safe failure; the reverse order would be no better.
    atomic_write_bytes(directory / SIGNATURE_NAME, sign_index(data, key))
    atomic_write_bytes(directory / INDEX_NAME, data)
    return sorted(entries, key=lambda e: (e.name, e.version, e.release, e.arch, e.filename))


def verify_index(data: bytes, signature: bytes, keys: Sequence[PublicKey], *, where: str) -> RepoIndex:
    """Check DATA against its SIGNATURE and the trusted KEYS, then parse it."""
    try:
        sig = json.loads(signature)
        key_id = str(sig["key_id"])
        raw_sig = bytes.fromhex(sig["signature"])
        if sig.get("algorithm") != "ed25519":
            raise ValueError(f"unknown algorithm {sig.get('algorithm')!r}")
    except (ValueError, KeyError, TypeError) as err:
        raise RepoIndexError(f"malformed index signature: {err}", where=where)
    signer = next((k for k in keys if k.key_id == key_id), None)
    if signer is None:
        raise RepoIndexError(
            f"index is signed by untrusted key {key_id}",
            where=where,
            hint="if you trust this repository's publisher, add their public key with 'conary key add'",
        )
    if not signer.verify(data, raw_sig):
        raise RepoIndexError(
            f"index signature does not verify against key {key_id}: the index was tampered with or corrupted",
            where=where,
            hint="re-create it with 'conary repo index' or fetch it again with 'conary repo sync'",
        )
    return RepoIndex(parse_index(data, where=where), key_id)


def parse_index(data: bytes, *, where: str) -> tuple[IndexEntry, ...]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise RepoIndexError(f"index is not valid JSON: {err}", where=where)
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise RepoIndexError("not a Conary repository index", where=where)
    version = doc.get("format_version")
    if version != INDEX_FORMAT_VERSION:
        raise RepoIndexError(
            f"index format version {version} is not supported (this Conary reads version "
            f"{INDEX_FORMAT_VERSION})",
            where=where,
            hint="upgrade Conary" if isinstance(version, int) and version > INDEX_FORMAT_VERSION else None,
        )
    try:
        return tuple(IndexEntry.from_json(item) for item in doc["packages"])
    except (KeyError, TypeError, ValueError) as err:
        raise RepoIndexError(f"malformed index entry: {err}", where=where)
