"""Kill test: SIGKILL `conary bootstrap run` at 20 random moments over a fixture profile of six
real packages in three stages. `resume` completes every time, and no package that had a
checkpoint when the run was killed is built again, counted from the checkpoint store."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conary.bootstrap import load_config, load_profile
from conary.bootstrap.pipeline import Bootstrap
from conary.graph import CheckpointStore
from conary.graph.store import kept_package
from conary.targets import load_target
from helpers_bootstrap import PACKAGES, make_fixture_tree

pytestmark = pytest.mark.slow

KILLS = 20
STAGES = ("stage1", "base", "conary")


def conary(*args: object) -> list[str]:
    return [sys.executable, "-m", "conary", *map(str, args)]


def checkpointed(state: Path) -> tuple[set[str], int]:
    """Keys whose checkpoint counts (row and kept package), and how many cooks ever started."""
    with CheckpointStore(state) as store:
        keys = {cp.key for cp in store.all_latest().values() if kept_package(state, cp.key).is_file()}
        keys |= {
            key for key, _name, _t in store.cooks() if store.get(key) and kept_package(state, key).is_file()
        }
        return keys, len(store.cooks())


def test_resume_after_sigkill_at_random_moments(tmp_path: Path) -> None:
    profile = make_fixture_tree(tmp_path / "tree")
    work = tmp_path / "work"
    state = work / "state"
    subprocess.run(
        conary(
            "bootstrap", "init", "--target", "x86_64", "--profile", profile, "--seed", "host", "--work", work
        ),
        check=True,
        capture_output=True,
    )
    config = load_config(work)
    bootstrap = Bootstrap(config, load_profile(config.profile), load_target(config.target))
    rng = random.Random(13)
    started = time.monotonic()
    subprocess.run(conary("bootstrap", "run", "--work", work), check=True, capture_output=True)
    full = time.monotonic() - started
    subprocess.run(conary("bootstrap", "clean", "--work", work), check=True, capture_output=True)

    interrupted = 0
    for i in range(KILLS):
        run = subprocess.Popen(
            conary("bootstrap", "run", "--work", work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # The first kill lands anywhere in a full run; later ones anywhere in a run that rebuilds
        # one stage (cleaned below), from the interpreter's start to after the last commit.
        time.sleep(rng.uniform(0.0, full if i == 0 else full / 2))
        run.send_signal(signal.SIGKILL)
        interrupted += run.wait() == -signal.SIGKILL
        had, cooks_before = checkpointed(state)

        resumed = subprocess.run(
            conary("bootstrap", "resume", "--work", work), capture_output=True, text=True
        )
        assert resumed.returncode == 0, f"kill {i}: resume failed:\n{resumed.stdout}\n{resumed.stderr}"
        with CheckpointStore(state) as store:
            assert store.integrity() == "ok"
            again = [(name, key) for key, name, _t in store.cooks()[cooks_before:] if key in had]
        assert again == [], f"kill {i}: rebuilt although checkpointed: {again}"
        states = {p.name: p.state for stage in bootstrap.status() for p in stage.packages}
        assert states == {name: "done" for _, name, _ in PACKAGES}, f"kill {i}: {states}"
        subprocess.run(
            conary("bootstrap", "clean", "--stage", rng.choice(STAGES), "--work", work),
            check=True,
            capture_output=True,
        )
    # Most kills must have hit a running bootstrap, or the test proved little.
    assert interrupted >= KILLS // 2
