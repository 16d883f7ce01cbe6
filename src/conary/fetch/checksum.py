"""Checksums name the bytes of a source: ``algo:hexdigest`` with sha256, sha512 or md5."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conary.errors import InputError

# md5 is accepted because the LFS book publishes md5 sums; warning about it is the recipe layer's job.
DIGEST_SIZES = {"sha256": 64, "sha512": 128, "md5": 32}

_HEX = re.compile(r"[0-9a-f]+")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class Checksum:
    algo: str
    hexdigest: str

    def __post_init__(self) -> None:
        if self.algo not in DIGEST_SIZES:
            raise InputError(
                f"unsupported checksum algorithm '{self.algo}'",
                hint="use one of " + ", ".join(sorted(DIGEST_SIZES)),
            )
        if len(self.hexdigest) != DIGEST_SIZES[self.algo] or not _HEX.fullmatch(self.hexdigest):
            raise InputError(
                f"malformed {self.algo} digest '{self.hexdigest}'",
                hint=f"a {self.algo} digest is {DIGEST_SIZES[self.algo]} lowercase hex digits",
            )

    @classmethod
    def parse(cls, text: str | Checksum) -> Checksum:
        """Parse ``"sha256:<hex>"``; a Checksum passes through unchanged."""
        if isinstance(text, Checksum):
            return text
        algo, sep, digest = str(text).strip().partition(":")
        if not sep:
            raise InputError(f"checksum '{text}' has no algorithm", hint="write it as sha256:<hex>")
        return cls(algo.lower(), digest.lower())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algo)

    def __str__(self) -> str:
        return f"{self.algo}:{self.hexdigest}"


def digest_stream(stream: BinaryIO, algo: str = "sha256") -> Checksum:
    hasher = hashlib.new(algo)
    while block := stream.read(_BLOCK):
        hasher.update(block)
    return Checksum(algo, hasher.hexdigest())


def digest_file(path: str | Path, algo: str = "sha256") -> Checksum:
    with open(path, "rb") as stream:
        return digest_stream(stream, algo)
