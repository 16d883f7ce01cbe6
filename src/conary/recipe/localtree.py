"""What a recipe's local source tree (`source.path`) holds: everything but the host Python's cache.

A tree of Python sources gains `__pycache__` directories whenever the host imports it; they are
not sources, and counting them would change the package's key (and its bytes) with every test run.
The cook copies, and the graph's key hashes, the same set of files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

IGNORED_DIRS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = (".pyc",)


def is_ignored(name: str) -> bool:
    return name in IGNORED_DIRS or name.endswith(IGNORED_SUFFIXES)


def walk(top: str | os.PathLike[str]) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk over TOP without the ignored entries, directories and files sorted."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        yield dirpath, dirnames, sorted(f for f in filenames if not is_ignored(f))


def copy_ignore(_directory: str, names: list[str]) -> set[str]:
    """shutil.copytree's ignore callback."""
    return {n for n in names if is_ignored(n)}
