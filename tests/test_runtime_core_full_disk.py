"""A full disk in the middle of a changeset: one precise error, and the root exactly as it was."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary.runtime import list_installed, verify
from helpers_runtime import Keys, build, make_keys, new_root, snapshot_tree

SMALL = {"usr/share/small/readme": b"fits\n", "usr/bin/tool": ("file", b"tool v1\n", 0o755)}


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs: writes beyond it fail with ENOSPC."""
    mountpoint = tmp_path / "small-fs"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def _incompressible(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_install_and_update_that_fill_the_disk_leave_the_root_unchanged(
    tmp_path: Path, small_fs: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    keys: Keys = make_keys(tmp_path / "keys")
    small = build(tmp_path / "work", keys, "small", "1.0", SMALL)
    # Declares a few KiB, so the up-front space check lets it through; but every file takes at
    # least a page of the tmpfs, so the disk fills in the middle of staging.
    many = build(
        tmp_path / "work",
        keys,
        "many",
        "1.0",
        {f"usr/share/many/f{i:04d}": f"tiny file {i:04d}\n".encode() for i in range(1500)},
    )
    # An update of `small` whose new tool fits, but whose extra payload does not: refused before
    # anything is written, from the declared sizes.
    small2 = build(
        tmp_path / "work",
        keys,
        "small",
        "2.0",
        {**SMALL, "usr/bin/tool": ("file", b"tool v2\n", 0o755),
         "usr/share/small/data": _incompressible(3 * 1024 * 1024, 99)},
    )  # fmt: skip
    root = new_root(small_fs / "root", keys)
    assert cli("--root", root, "install", small).code == 0
    before = snapshot_tree(root)
    before_all = snapshot_tree(root, exclude=("var/lib/conary",))

    cases = (
        (
            ("install", many),
            f"conary: error: {root}: install failed: No space left on device",
            ("the changeset was rolled back, the root is unchanged", "hint: free space on the filesystem"),
        ),
        (
            ("update", small2),
            # 3 MiB for the file, as much again for its content in the store
            f"conary: error: {root}: update (update small) needs 6.0 MiB",
            ("but its filesystem has only", "free; nothing was written", "hint: free some space"),
        ),
    )
    for args, start, parts in cases:
        r = cli("--root", root, *args)
        assert r.code == 1, r.err
        lines = r.err.strip().splitlines()
        assert len(lines) == 1, r.err
        assert lines[0].startswith(start), lines[0]
        assert all(part in lines[0] for part in parts), lines[0]
        assert "Traceback" not in r.err
        assert snapshot_tree(root) == before
        # Nothing half-written is left in the content store either.
        assert snapshot_tree(root, exclude=("var/lib/conary",)) == before_all
        assert [p.name for p in list_installed(root)] == ["small"]
        assert verify(root) == []
    assert (root / "usr/bin/tool").read_bytes() == b"tool v1\n"
    assert os.statvfs(small_fs).f_bfree > 0
