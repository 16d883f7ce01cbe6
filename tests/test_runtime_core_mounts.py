"""A changeset that writes to a filesystem mounted inside the root flushes that filesystem too.

syncfs() flushes only the filesystem of the descriptor it is given; a root with a separately
mounted /boot (here a real tmpfs mounted inside the test root) must have both flushed before the
database commit, or a power loss could commit a state whose /boot files never reached the disk.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import conary.runtime.safefs as safefs
from conary.runtime import install_packages, list_installed, remove, rollback
from conary.runtime.db import Database
from helpers_runtime import Keys, build, make_keys, new_root, snapshot_tree

SPEC = {
    "boot/vmlinuz-test": ("file", b"kernel image\n" * 100, 0o644),
    "boot/loader/entries/test.conf": b"title test\n",
    "usr/bin/tool": ("file", b"tool\n", 0o755),
}


@pytest.fixture
def root_with_boot_mount(tmp_path: Path) -> Iterator[tuple[Path, Keys]]:
    """An initialised root on the test's filesystem, with a real tmpfs mounted at ROOT/boot."""
    keys = make_keys(tmp_path / "keys")
    root = new_root(tmp_path / "root", keys)
    boot = root / "boot"
    boot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(boot)], check=True)
    try:
        yield root, keys
    finally:
        subprocess.run(["umount", "-l", str(boot)], check=True)


def _record_flushes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Watch the real syncfs() and the real commit, in the order they happen."""
    events: list[tuple[str, int]] = []
    real_syncfs = safefs.syncfs
    real_commit = Database.commit_state

    def watched_syncfs(fd: int) -> None:
        events.append(("syncfs", os.fstat(fd).st_dev))
        real_syncfs(fd)

    def watched_commit(self: Database, *args: object, **kwargs: object) -> int:
        events.append(("commit", 0))
        return real_commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safefs, "syncfs", watched_syncfs)
    monkeypatch.setattr(Database, "commit_state", watched_commit)
    return events


def test_install_flushes_a_filesystem_mounted_inside_the_root_before_the_commit(
    tmp_path: Path, root_with_boot_mount: tuple[Path, Keys], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, keys = root_with_boot_mount
    root_dev = os.stat(root).st_dev
    boot_dev = os.stat(root / "boot").st_dev
    assert boot_dev != root_dev  # the mount is real
    pkg = build(tmp_path / "work", keys, "kernel", "1.0", SPEC)
    events = _record_flushes(monkeypatch)

    install_packages(root, [pkg], sandbox="never")

    commit = events.index(("commit", 0))
    flushed_before = {dev for kind, dev in events[:commit] if kind == "syncfs"}
    assert {root_dev, boot_dev} <= flushed_before, events
    # The files really are on the tmpfs, and the root is consistent.
    assert (root / "boot/vmlinuz-test").read_bytes() == b"kernel image\n" * 100
    assert os.stat(root / "boot/vmlinuz-test").st_dev == boot_dev
    assert [p.name for p in list_installed(root)] == ["kernel"]


def test_rollback_after_a_removal_restores_files_on_the_mounted_filesystem(
    tmp_path: Path, root_with_boot_mount: tuple[Path, Keys], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, keys = root_with_boot_mount
    boot_dev = os.stat(root / "boot").st_dev
    pkg = build(tmp_path / "work", keys, "kernel", "1.0", SPEC)
    install_packages(root, [pkg], sandbox="never")
    installed = snapshot_tree(root)
    remove(root, ["kernel"], sandbox="never")
    assert not (root / "boot/vmlinuz-test").exists()

    events = _record_flushes(monkeypatch)

    rollback(root, 1, sandbox="never")

    commit = events.index(("commit", 0))
    assert boot_dev in {dev for kind, dev in events[:commit] if kind == "syncfs"}, events
    assert snapshot_tree(root) == installed


def test_space_is_checked_on_the_filesystem_each_file_goes_to(
    tmp_path: Path, root_with_boot_mount: tuple[Path, Keys], cli
) -> None:  # type: ignore[no-untyped-def]
    """The root's filesystem has room; the 4 MiB /boot mount does not: refused, naming /boot."""
    root, keys = root_with_boot_mount
    big = {"boot/initrd.img": ("file", random.Random(5).randbytes(5 * 1024 * 1024), 0o644)}
    pkg = build(tmp_path / "work", keys, "initrd", "1.0", big)
    r = cli("--root", root, "install", pkg)
    assert r.code == 1
    assert r.err.startswith(f"conary: error: {root}/boot: install (install initrd) needs 5.0 MiB"), r.err
    assert os.listdir(root / "boot") == []
