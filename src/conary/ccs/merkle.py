"""Merkle roots: one per component over its file records, and content_root over the components.

Both use the same binary tree (the RFC 6962 shape): leaf = sha256(0x00 || leaf bytes),
node = sha256(0x01 || left || right), a list of n > 1 leaves splits at the largest power of two
below n, and the root of an empty list is sha256 of the empty string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cbor2

from conary.ccs.model import Component, FileEntry


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _tree(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    split = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _tree(leaves[:split]) + _tree(leaves[split:])).digest()


def merkle_root(items: Sequence[bytes]) -> str:
    """Root (hex) over already-encoded leaf items, in the given order."""
    return _tree([_leaf(item) for item in items]).hex()


def file_record(entry: FileEntry) -> bytes:
    """The leaf bytes of a file: the canonical CBOR of its manifest record."""
    from conary.ccs.manifest import encode_file

    return encode_file(entry)


def component_root(files: Sequence[FileEntry]) -> str:
    """Root over the component's files in manifest order (sorted by path)."""
    return merkle_root([file_record(f) for f in files])


def content_root(components: Sequence[Component]) -> str:
    """Root over the components in manifest order (sorted by name); leaf = CBOR [name, default, root]."""
    return merkle_root(
        [cbor2.dumps([c.name, c.default, bytes.fromhex(c.root)], canonical=True) for c in components]
    )
