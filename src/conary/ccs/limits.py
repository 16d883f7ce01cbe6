"""Budgets a reader enforces before it trusts a package; the writer stays within the same bounds."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# FastCDC 2020 parameters (format 1). Files of CHUNK_THRESHOLD bytes or more are chunked.
CHUNK_MIN = 16 * KiB
CHUNK_AVG = 64 * KiB
CHUNK_MAX = 256 * KiB
CHUNK_THRESHOLD = 16 * KiB
# No object may expand beyond this: a chunk is at most CHUNK_MAX, a small file below CHUNK_THRESHOLD.
MAX_OBJECT_BYTES = CHUNK_MAX


@dataclass(frozen=True)
class Limits:
    """What a reader accepts. The defaults are part of format 1 (docs/ccs-format.md § Budgets)."""

    max_manifest_bytes: int = 64 * MiB
    max_signature_bytes: int = 4 * KiB
    max_entries: int = 500_000
    max_path_bytes: int = 4096
    max_file_bytes: int = 8 * GiB
    max_total_bytes: int = 32 * GiB
    max_objects: int = 2_000_000
    max_compressed_object_bytes: int = CHUNK_MAX + 64 * KiB
    max_scriptlet_bytes: int = 1 * MiB
    max_dependencies: int = 100_000
