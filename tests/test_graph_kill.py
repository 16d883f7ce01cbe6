"""SIGKILL `conary build` at random moments: every rerun completes with the same package bytes, no
checkpointed package is cooked again (counted from the store), and the store stays intact."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_graph import write_tree

pytestmark = pytest.mark.slow

KILLS = 22
# A chain and a diamond: small enough that 22 kills and the reruns stay within a minute or two.
SMALL = {"base": (), "left": ("base",), "right": ("base",), "top": ("left", "right"), "kit": ()}


def conary_build(tmp: Path, tree: Path, repo: Path, state: Path) -> subprocess.Popen[bytes]:
    """`conary build` in its own session, its stderr kept in tmp/last.err for the assertions."""
    argv = [
        sys.executable,
        "-m",
        "conary",
        "build",
        str(tree),
        "--output",
        str(repo),
        "--state",
        str(state),
        "--seed",
        "host",
        "-j",
        "2",
        "--source-cache",
        str(tmp / "sources"),
    ]
    # Its own session: the kill reaches the scheduler and, through it, every cook.
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def repo_bytes(repo: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(repo.glob("*.ccs"))}


def check_store(state: Path) -> None:
    if not (state / "checkpoints.db").exists():
        return  # killed before the store was created
    db = sqlite3.connect(state / "checkpoints.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        checkpoints = {key: created for key, created in db.execute("SELECT key, created FROM checkpoints")}
        for key, started in db.execute("SELECT key, started FROM cooks"):
            # A cook of a key that already had a checkpoint when it started would be a rebuild.
            assert key not in checkpoints or checkpoints[key] >= started, key
        for key, sha in db.execute("SELECT key, package_sha256 FROM checkpoints"):
            kept = state / "packages" / f"{key}.ccs"
            assert hashlib.sha256(kept.read_bytes()).hexdigest() == sha
    finally:
        db.close()


def test_killed_builds_resume_to_the_same_packages(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", SMALL)
    started = time.monotonic()
    reference = conary_build(tmp_path, tree, tmp_path / "ref-repo", tmp_path / "ref-state")
    assert reference.wait() == 0, (tmp_path / "last.err").read_text()[-2000:]
    full = time.monotonic() - started
    expected = repo_bytes(tmp_path / "ref-repo")
    assert len(expected) == len(SMALL)

    rng = random.Random(20261203)
    repo, state = tmp_path / "repo", tmp_path / "state"
    kills = completed = 0
    outcomes: list[float] = []
    while kills < KILLS:
        proc = conary_build(tmp_path, tree, repo, state)
        began = time.monotonic()
        try:
            proc.wait(timeout=rng.uniform(0.05, full))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            outcomes.append(round(time.monotonic() - began, 2))
        else:
            # It finished before the kill: the packages must be the reference's. Start over, so
            # the kills keep landing in all phases of a build.
            assert proc.returncode == 0, (tmp_path / "last.err").read_text()[-2000:]
            assert repo_bytes(repo) == expected
            completed += 1
            check_store(state)
            shutil.rmtree(repo)
            shutil.rmtree(state)
            continue
        check_store(state)
    print(f"{kills} kills at {outcomes} s; {completed} runs completed first; a full build: {full:.1f} s")
    final = conary_build(tmp_path, tree, repo, state)
    assert final.wait() == 0, (tmp_path / "last.err").read_text()[-2000:]
    assert repo_bytes(repo) == expected
    check_store(state)
