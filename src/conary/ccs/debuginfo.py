"""Split DWARF out of ELF files: the debug data goes to usr/lib/debug, the original is stripped.

Works on private copies in a work directory; the caller's tree is never modified.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NamedTuple

from conary.ccs.elfinfo import ElfInfo
from conary.ccs.errors import CcsError
from conary.fsutil import require_tool

DEBUG_DIR = "usr/lib/debug"


class TreeItem(NamedTuple):
    """An entry of the tree being packed; *source* is where its bytes are read from.

    A named tuple rather than a frozen dataclass: one is made for every entry of the tree, and
    batches of thousands travel to the packing workers; a tuple is built and pickled several times
    faster.
    """

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    source: str
    target: str = ""
    size: int = 0


def debug_path_for(item_path: str, build_id: str) -> str:
    """usr/lib/debug/.build-id/xx/rest.debug, or usr/lib/debug/<path>.debug without a build-id."""
    if len(build_id) > 2:
        return f"{DEBUG_DIR}/.build-id/{build_id[:2]}/{build_id[2:]}.debug"
    return f"{DEBUG_DIR}/{item_path}.debug"


def wants_split(path: str, elf: ElfInfo | None) -> bool:
    return (
        elf is not None
        and elf.has_debug_info
        and elf.elf_type in ("ET_EXEC", "ET_DYN")
        and not path.startswith(DEBUG_DIR + "/")
        and not path.endswith(".debug")
    )


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {result.returncode}"
        raise CcsError(f"{Path(argv[0]).name} failed: {reason}", where=what)


class DebugSplitter:
    """Splits files one at a time into a private work directory, shared by every packing worker.

    Each split yields the debug file too; the builder drops those the tree already has, and keeps
    one of several that share a build-id.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._serial = 0
        self._tools: tuple[str, str] | None = None

    def _tool_paths(self) -> tuple[str, str]:
        if self._tools is None:
            self._tools = (
                require_tool("objcopy", "binutils", "split debug information"),
                require_tool("strip", "binutils", "strip debug information"),
            )
        return self._tools

    def split(self, item: TreeItem, elf: ElfInfo) -> tuple[TreeItem, TreeItem]:
        """Return (stripped item, debug-file item), both backed by new files in the work directory."""
        dbg = debug_path_for(item.path, elf.build_id)
        objcopy, strip = self._tool_paths()
        self._serial += 1
        # the pid keeps slots of different worker processes apart
        slot = self.workdir / f"{os.getpid()}-{self._serial:06d}"
        slot.mkdir(parents=True)
        debug_file = slot / Path(dbg).name  # the debuglink records this base name
        stripped = slot / "stripped"
        _run([objcopy, "--only-keep-debug", item.source, str(debug_file)], item.path)
        _run([strip, "--strip-debug", "-o", str(stripped), item.source], item.path)
        _run([objcopy, f"--add-gnu-debuglink={debug_file}", str(stripped)], item.path)
        new = TreeItem(
            item.path, "file", item.mode, item.uid, item.gid, str(stripped), "", stripped.stat().st_size
        )
        return new, TreeItem(dbg, "file", 0o644, 0, 0, str(debug_file), "", debug_file.stat().st_size)


def missing_dirs(paths: list[str], existing: set[str]) -> list[TreeItem]:
    """Directory items (0755, root) for parents of *paths* the tree does not have."""
    made: dict[str, TreeItem] = {}
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in existing and parent not in made:
            made[parent] = TreeItem(parent, "dir", 0o755, 0, 0, "")
            parent = parent.rpartition("/")[0]
    return list(made.values())
