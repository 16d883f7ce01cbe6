"""Stage0 from the shipped lock: `conary bootstrap stage0` downloads the pinned .debs into the
source cache (shared with the other tests that need them), imports them with the seed fixups into
the work dir's seed, and does nothing the second time.

Debian replaces versions at point releases: when a pinned .deb has left the archive, the lock is
resolved again into the test's copy of the tree (the shipped lock stays pinned), and the test says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conary.debian.lock import read_lock
from conary.distro_tree import tree_dir
from conary.fetch import SourceCache
from conary.recipe.localtree import copy_ignore
from helpers_deb import lock_files

pytestmark = [pytest.mark.slow, pytest.mark.network]


def conary(*args: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "conary", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, f"conary {args}:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result


def test_stage0_imports_the_locked_seed_once(tmp_path: Path, shared_source_cache: Path) -> None:
    tree = tmp_path / "tree"
    # The whole tree the profile names: recipes outside minimal/, the Conary stage's src/, the Image
    # stage's definition.
    for name in ("stages", "recipes", "images", "src"):
        shutil.copytree(tree_dir(name), tree / name, ignore=copy_ignore)
    lock_file = tree / "stages" / "seed" / "x86_64.lock"
    report: list[str] = []
    cache = SourceCache(shared_source_cache)
    lock, _debs = lock_files(
        lock_file, cache, shared_source_cache / ".debian-apt-deb", lock_file.parent, report
    )
    print("\n".join(report))  # which of cache, download or refresh happened
    work = tmp_path / "work"
    profile = tree / "stages" / "minimal.toml"
    conary(
        "bootstrap",
        "init",
        "--target",
        "x86_64",
        "--profile",
        profile,
        "--work",
        work,
        "--source-cache",
        shared_source_cache,
    )
    plan = json.loads(
        subprocess.run(
            [sys.executable, "-m", "conary", "bootstrap", "dry-run", "--work", work, "--json"],
            capture_output=True,
            text=True,
        ).stdout
    )
    assert plan["seed"]["debs"] == plan["seed"]["debs_cached"] == len(read_lock(lock_file).debs)

    first = conary("bootstrap", "stage0", "--work", work)
    assert first.stdout.startswith("seed: done") and "imported x86_64.lock" in first.stdout
    imported = sorted((work / "repo" / "seed").glob("*.ccs"))
    assert len(imported) == len(lock.debs) + 1  # and the seed fixups
    status = json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)
    assert status["seed"] == "done"
    again = conary("bootstrap", "stage0", "--work", work)
    assert again.stdout.startswith("seed: done in 0.0s: imported before")

    conary("bootstrap", "clean", "--stage", "seed", "--work", work)
    assert json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)["seed"] == "pending"
