"""The canonical tar of a .ccs file: ustar headers fully determined by (name, size, mtime).

Writing and strict parsing live together so the two can never disagree. The reader rebuilds every
header it meets and compares it byte for byte, so any change to a header is detected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from conary.ccs.errors import CcsVerifyError

BLOCK = 512
RECORD = 10240  # archives end with two zero blocks and are zero-padded to a multiple of this
MAX_MTIME = 8**11 - 1
MAX_SIZE = 8**11 - 1

# (field, offset, length) of the ustar header, for error messages
_FIELDS = (
    ("name", 0, 100),
    ("mode", 100, 8),
    ("uid", 108, 8),
    ("gid", 116, 8),
    ("size", 124, 12),
    ("mtime", 136, 12),
    ("chksum", 148, 8),
    ("typeflag", 156, 1),
    ("linkname", 157, 100),
    ("magic", 257, 6),
    ("version", 263, 2),
    ("uname", 265, 32),
    ("gname", 297, 32),
    ("devmajor", 329, 8),
    ("devminor", 337, 8),
    ("prefix", 345, 155),
    ("pad", 500, 12),
)


def _field_at(offset: int) -> str:
    return next(name for name, start, length in _FIELDS if start <= offset < start + length)


_TEMPLATE = bytearray(BLOCK)
_TEMPLATE[100:108] = b"0000644\0"
_TEMPLATE[108:116] = b"0000000\0"
_TEMPLATE[116:124] = b"0000000\0"
_TEMPLATE[148:156] = b" " * 8
_TEMPLATE[156:157] = b"0"
_TEMPLATE[257:263] = b"ustar\0"
_TEMPLATE[263:265] = b"00"
_TEMPLATE[265:269] = b"root"
_TEMPLATE[297:301] = b"root"
_TEMPLATE[329:337] = b"0000000\0"
_TEMPLATE[337:345] = b"0000000\0"
_TEMPLATE_SUM = sum(_TEMPLATE)


_NAME_PAD = bytes(100)
_AFTER_NAME = bytes(_TEMPLATE[100:124])  # mode, uid, gid
_AFTER_CHECKSUM = bytes(_TEMPLATE[156:])  # typeflag, magic, version, uname, gname, ...


@lru_cache(maxsize=8)
def _mtime_field(mtime: int) -> tuple[bytes, int]:
    field = b"%011o\0" % mtime
    return field, sum(field)


def make_header(name: str, size: int, mtime: int) -> bytes:
    # Joined from fixed pieces: one header per object, thousands per package.
    raw_name = name.encode("ascii")
    if len(raw_name) > 100 or not 0 <= size <= MAX_SIZE or not 0 <= mtime <= MAX_MTIME:
        raise ValueError(f"entry {name!r} does not fit a canonical ustar header")
    size_field = b"%011o\0" % size
    mtime_field, mtime_sum = _mtime_field(mtime)
    checksum = _TEMPLATE_SUM + sum(raw_name) + sum(size_field) + mtime_sum
    return b"".join(
        (
            raw_name,
            _NAME_PAD[len(raw_name) :],
            _AFTER_NAME,
            size_field,
            mtime_field,
            b"%06o\0 " % checksum,
            _AFTER_CHECKSUM,
        )
    )


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def end_of_archive(offset: int) -> bytes:
    """Two zero blocks, then zeros up to the next multiple of RECORD, for an archive at *offset*."""
    end = offset + 2 * BLOCK
    return b"\0" * (end - offset + (-end % RECORD))


@dataclass(frozen=True)
class Member:
    name: str
    header_offset: int
    data_offset: int
    size: int
    mtime: int


def _bad(what: str, where: str = "archive") -> CcsVerifyError:
    return CcsVerifyError(what, where=where)


def parse_members(fd: int, file_size: int, *, max_members: int, budgets: dict[str, int]) -> list[Member]:
    """Parse and check every tar header of the archive open at *fd*; return the members in order.

    *budgets* maps an entry name to the largest size accepted for it (checked before its data is
    touched); other entries are limited by budgets["*"].
    """
    if file_size % BLOCK:
        raise _bad(f"archive is truncated or has trailing bytes (size {file_size} is not a multiple of 512)")
    members: list[Member] = []
    pos = 0
    mtime: int | None = None
    while True:
        if pos + BLOCK > file_size:
            raise _bad(f"archive is truncated: no end-of-archive marker after {len(members)} entries")
        header = os.pread(fd, BLOCK, pos)
        if len(header) != BLOCK:
            raise _bad(f"archive is truncated at offset {pos}")
        if header == b"\0" * BLOCK:
            _check_end(fd, pos, file_size)
            return members
        index = len(members)
        if index >= max_members:
            raise _bad(f"archive has more than {max_members} entries, over the budget")
        stored = header[148:156]
        computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
        try:
            stored_value = int(stored.rstrip(b" \0").decode("ascii"), 8)
        except ValueError:
            stored_value = -1
        if stored_value != computed:
            raise _bad(f"tar header of entry #{index} at offset {pos} has a bad checksum (corrupt header)")
        name = header[:100].split(b"\0", 1)[0].decode("ascii", "replace")
        try:
            size = int(header[124:135].decode("ascii"), 8)
            entry_mtime = int(header[136:147].decode("ascii"), 8)
            canonical = make_header(name, size, entry_mtime)
        except ValueError:
            raise _bad(f"tar header of entry #{index} at offset {pos} is malformed", name)
        if canonical != header:
            first = next(i for i in range(BLOCK) if canonical[i] != header[i])
            raise _bad(
                f"tar header of entry #{index} at offset {pos} is not canonical (field {_field_at(first)})",
                name,
            )
        if mtime is None:
            mtime = entry_mtime
        elif entry_mtime != mtime:
            raise _bad(f"entry mtime {entry_mtime} differs from the archive's {mtime}", name)
        limit = budgets.get(name, budgets["*"])
        if size > limit:
            raise _bad(f"entry is {size} bytes, over the budget of {limit}", name)
        data = pos + BLOCK
        end = data + size
        if end + (-size % BLOCK) > file_size:
            raise _bad(
                f"archive is truncated: entry claims {size} bytes but only {max(file_size - data, 0)} remain",
                name,
            )
        pad = -size % BLOCK
        if pad and os.pread(fd, pad, end) != b"\0" * pad:
            raise _bad("non-zero padding after the entry's data", name)
        members.append(Member(name, pos, data, size, entry_mtime))
        pos = end + pad


def _check_end(fd: int, pos: int, file_size: int) -> None:
    expected = pos + len(end_of_archive(pos))
    if file_size < expected:
        raise _bad("archive is truncated inside its end-of-archive padding")
    if file_size > expected:
        raise _bad(f"archive has {file_size - expected} trailing bytes after its end")
    tail = os.pread(fd, file_size - pos, pos)
    if tail.count(0) != len(tail):
        raise _bad(f"end-of-archive area has non-zero bytes (after offset {pos})")
