"""Parsing of pinned checksums: "sha256:<64 hex>", "sha512:<128 hex>" or "md5:<32 hex>"."""

from __future__ import annotations

import difflib

from conary.recipe.model import Checksum

HEX_LENGTHS = {"sha256": 64, "sha512": 128, "md5": 32}
# md5 is accepted only because the LFS book publishes md5 sums; it no longer names bytes safely.
WEAK_ALGORITHMS = frozenset({"md5"})
MD5_WARNING = "md5 is weak; it is accepted only because the LFS book publishes md5 sums (prefer sha256)"

_HEX = frozenset("0123456789abcdefABCDEF")


class ChecksumSyntaxError(ValueError):
    pass


def parse_checksum(text: str) -> Checksum:
    """Return the Checksum that *text* spells, or raise ChecksumSyntaxError saying what is wrong."""
    algo, sep, digest = text.partition(":")
    if not sep:
        raise ChecksumSyntaxError(
            f"checksum {_short(text)} has no algorithm: write it as 'sha256:<64 hex digits>'"
        )
    if algo not in HEX_LENGTHS:
        close = difflib.get_close_matches(algo.lower(), HEX_LENGTHS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ChecksumSyntaxError(
            f"unknown checksum algorithm '{algo}'{hint}: expected sha256, sha512 or md5"
        )
    for index, char in enumerate(digest):
        if char not in _HEX:
            raise ChecksumSyntaxError(
                f"{algo} checksum has a non-hex character {char!r} at position {index + 1}"
            )
    want = HEX_LENGTHS[algo]
    if len(digest) != want:
        raise ChecksumSyntaxError(f"{algo} checksum must have {want} hex digits, got {len(digest)}")
    return Checksum(algo, digest.lower())


def _short(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:21] + "...")
