"""Debian binary packages: reading .deb files, converting them to CCS, and pinned bootstrap seeds.

    import_deb(deb, output_dir, signing_key) -> ImportedPackage      # one .deb -> one .ccs
    DebFile(path).control() / .data_members()                         # the .deb itself

docs/debian-import.md describes the conversion and the seeds.
"""

from __future__ import annotations

from conary.debian.convert import ImportedPackage, conary_arch, import_deb, split_version
from conary.debian.debfile import DebControl, DebFile
from conary.debian.errors import DebFormatError, PinnedFileGone, SeedError

__all__ = [
    "DebControl",
    "DebFile",
    "DebFormatError",
    "ImportedPackage",
    "PinnedFileGone",
    "SeedError",
    "conary_arch",
    "import_deb",
    "split_version",
]
