"""What a killed package build leaves behind is removed by the next build into the same directory."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conary.ccs.workdir as workdir
from conary.ccs import PackageMeta, build_package, open_package
from conary.ccs.keys import new_signing_key
from conary.ccs.workdir import PREFIX, build_workdir, sweep_stale

KEY = new_signing_key()


def test_sweep_removes_unlocked_scratch_and_old_temporaries_only(tmp_path: Path) -> None:
    stale = tmp_path / f"{PREFIX}dead"
    (stale / "debug").mkdir(parents=True)
    (stale / "lock").touch()
    (stale / "spool-1").write_bytes(b"x" * 1000)
    old_temp = tmp_path / ".p-1-1.x86_64.ccs.abc.tmp"
    old_temp.write_bytes(b"partial")
    os.utime(old_temp, (time.time() - 3600, time.time() - 3600))
    fresh_temp = tmp_path / ".q-1-1.x86_64.ccs.def.tmp"
    fresh_temp.write_bytes(b"being written")
    package = tmp_path / "p-1-1.x86_64.ccs"
    package.write_bytes(b"a finished package")
    assert sorted(sweep_stale(tmp_path)) == sorted([stale, old_temp])
    assert not stale.exists() and not old_temp.exists()
    assert fresh_temp.exists() and package.exists()


def test_sweep_keeps_what_a_live_build_holds(tmp_path: Path) -> None:
    with build_workdir(tmp_path) as live:
        old_temp = tmp_path / ".p-1-1.x86_64.ccs.abc.tmp"
        old_temp.write_bytes(b"partial")
        os.utime(old_temp, (time.time() - 3600, time.time() - 3600))
        young = tmp_path / f"{PREFIX}starting"  # created, lock not taken yet
        young.mkdir()
        assert sweep_stale(tmp_path) == []
        assert live.exists() and young.exists() and old_temp.exists()
        lock = os.open(live / "lock", os.O_RDWR)
        try:  # the build's lock really is held
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the live build's lock was free")
            except BlockingIOError:
                pass
        finally:
            os.close(lock)
    assert not live.exists()


BUILD = """
import sys
from pathlib import Path

import pytest
from conary.ccs import PackageMeta, build_package
from conary.ccs.keys import new_signing_key
build_package(Path(sys.argv[1]), PackageMeta("big", "1"), output_dir=Path(sys.argv[2]),
              signing_key=new_signing_key(), workers=2)
"""


def test_a_killed_build_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for n in range(12):
        (tree / f"blob{n}").write_bytes(os.urandom(8 << 20))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(tree), str(out)])
    deadline = time.monotonic() + 60
    while not list(out.glob(f"{PREFIX}*/spool-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) == 2, "the kill came too late to leave scratch behind"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in workers:  # the workers die with their builder
        _wait_gone(pid)
    assert list(out.glob(f"{PREFIX}*"))
    assert not list(out.glob("*.ccs"))
    for temp in out.glob(".*.tmp"):  # the temporary package, as it is once ten minutes have passed
        os.utime(temp, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "small").mkdir()
    (tmp_path / "small/file").write_text("hello\n")
    path = build_package(tmp_path / "small", PackageMeta("small", "1"), output_dir=out, signing_key=KEY)
    assert sorted(p.name for p in out.iterdir()) == [path.name]
    with open_package(path) as pkg:
        assert [f.path for f in pkg.manifest.files] == ["file"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # dead; only its reaping by init is left
            return
        time.sleep(0.01)
    raise AssertionError(f"packing worker {pid} outlived its killed builder")


def test_a_sweep_in_the_instant_before_a_build_locks_keeps_that_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several builds into one directory: one build's sweep may run just before another takes its
    lock. The other build's scratch directory must survive it."""

    real_flock = fcntl.flock
    swept: list[list[Path]] = []

    def flock_after_a_concurrent_sweep(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:  # the build's own lock, not the sweep's probe
            swept.append(sweep_stale(tmp_path))
        real_flock(fd, operation)

    monkeypatch.setattr(workdir.fcntl, "flock", flock_after_a_concurrent_sweep)
    with build_workdir(tmp_path) as work:
        assert swept == [[]]
        (work / "spool-1").write_bytes(b"spooled")  # the directory is still there
        monkeypatch.setattr(workdir.fcntl, "flock", real_flock)
        assert sweep_stale(tmp_path) == []  # and, locked now, a later sweep keeps it too
    assert list(tmp_path.iterdir()) == []
