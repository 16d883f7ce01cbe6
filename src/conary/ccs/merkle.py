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


def leaf_hash(data: bytes) -> bytes:
    """The leaf of one item (packing workers compute these for their files)."""
    return hashlib.sha256(b"\x00" + data).digest()


def _tree(leaves: Sequence[bytes]) -> bytes:
    """The root over leaf hashes, as the RFC 6962 recursion defines it (kept as the reference)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    split = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _tree(leaves[:split]) + _tree(leaves[split:])).digest()


def root_of_leaves(leaves: Sequence[bytes]) -> str:
    """Root (hex) over leaf hashes. Built level by level, pairing neighbours and carrying an odd last
    node up unpaired: the same tree as the recursion, without its slicing."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = list(leaves)
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def merkle_root(items: Sequence[bytes]) -> str:
    """Root (hex) over already-encoded leaf items, in the given order."""
    return root_of_leaves([leaf_hash(item) for item in items])


def file_record(entry: FileEntry) -> bytes:
    """The leaf bytes of a file: the canonical CBOR of its manifest record."""
    from conary.ccs.manifest import encode_file  # breaks a cycle: manifest imports this module

    return encode_file(entry)


def component_root(files: Sequence[FileEntry]) -> str:
    """Root over the component's files in manifest order (sorted by path)."""
    return merkle_root([file_record(f) for f in files])


def content_root(components: Sequence[Component]) -> str:
    """Root over the components in manifest order (sorted by name); leaf = CBOR [name, default, root]."""
    return merkle_root(
        [cbor2.dumps([c.name, c.default, bytes.fromhex(c.root)], canonical=True) for c in components]
    )
