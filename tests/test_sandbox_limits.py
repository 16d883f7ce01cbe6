"""A cook step's limits, for real: its time limit, its process limit against a fork bomb, its memory
limit against a memory hog. Each kills or fails the step, leaves nothing running, and keeps the log.

The memory and process limits are whichever mechanism is in force (docs/sandbox.md): on this machine
and CI's, rlimits, as cgroup v2 has no memory or pids controller there (tests/test_sandbox_cgroup.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conary.ccs import open_package
from conary.cook import CookOptions, cook_recipe
from conary.cook.errors import StepError
from conary.recipe import load_recipe as load
from conary.sandbox import cgroup
from conary.sandbox.spec import MAPPED_ID_BASE
from helpers_cook import tiny_recipe

# Unique enough that no other process on the machine has it on its command line.
MARKER = "987654"


@pytest.fixture
def cook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    return tmp_path


def _options(env: Path, **changes: object) -> CookOptions:
    return CookOptions(output_dir=env / "out", source_cache=env / "cache", workdir=env / "work", **changes)  # type: ignore[arg-type]


def _running(marker: str) -> list[int]:
    """Processes with *marker* on their command line, once those already killed have gone (a killed
    process that was re-parented lingers until its new parent reaps it)."""
    deadline = time.monotonic() + 10
    while (found := _scan(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _scan(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(name))
    return found


def test_recipe_timeout_kills_the_step_and_everything_it_started(cook_env: Path) -> None:
    recipe = tiny_recipe(
        cook_env,
        steps={"make": f"sleep {MARKER}1 & sleep {MARKER}2 & echo started; wait"},
        extra="",
    )
    recipe.write_text(recipe.read_text().replace("[build]\n", "[build]\ntimeout = 1\n"))
    assert load(recipe).build.timeout == 1
    with pytest.raises(StepError) as caught:
        cook_recipe(recipe, _options(cook_env))
    err = caught.value
    assert err.step == "make" and err.timed_out == 1
    assert err.what.startswith("step 'make' timed out after 1 seconds and was killed (log: ")
    log = (cook_env / "work/logs/make.log").read_text()
    assert log.startswith("started\n")
    assert log.endswith("conary: step 'make' timed out after 1 seconds and was killed\n")
    assert _running(MARKER) == []


def test_step_timeout_option_overrides_the_recipe(cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env, steps={"make": "sleep 30"})
    recipe.write_text(recipe.read_text().replace("[build]\n", "[build]\ntimeout = 3600\n"))
    with pytest.raises(StepError) as caught:
        cook_recipe(recipe, _options(cook_env, step_timeout=0.5))
    assert caught.value.timed_out == 0.5


def test_timeout_holds_on_the_host_runner_too(cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env, steps={"make": f"sleep {MARKER}3"})
    with pytest.raises(StepError) as caught:
        cook_recipe(recipe, _options(cook_env, step_timeout=0.5, hermetic=False))
    assert caught.value.timed_out == 0.5
    assert _running(f"{MARKER}3") == []


# A fork bomb with a ceiling, so that even without the limit the machine only sees 400 sleeps for a
# moment: every sleep stays alive until the step ends, so the count only grows.
FORK_BOMB = f"i=0; while [ $i -lt 400 ]; do sleep {MARKER}4 & i=$((i+1)); done; echo all-forked"


def test_fork_bomb_fails_the_step(cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env, steps={"make": FORK_BOMB})
    with pytest.raises(StepError) as caught:
        cook_recipe(recipe, _options(cook_env, pids=64))
    assert caught.value.step == "make" and not caught.value.timed_out
    log = (cook_env / "work/logs/make.log").read_text()
    assert "all-forked" not in log
    assert "fork" in log.lower() or "resource temporarily unavailable" in log.lower(), log
    assert _running(f"{MARKER}4") == []


def test_control_the_same_loop_completes_under_a_higher_limit(cook_env: Path) -> None:
    loop = FORK_BOMB.replace("400", "40").replace(f"sleep {MARKER}4", "sleep 1") + "; wait"
    recipe = tiny_recipe(cook_env, steps={"make": loop, "install": "true"})
    assert cook_recipe(recipe, _options(cook_env, pids=256)).package_path.exists()
    assert "all-forked" in (cook_env / "work/logs/make.log").read_text()


HOG = "python3 -c 'import sys; b = bytearray(1 << 29); print(\"hogged\", len(b))'"


def test_memory_hog_fails_the_step(cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env, steps={"make": HOG})
    with pytest.raises(StepError) as caught:
        cook_recipe(recipe, _options(cook_env, memory=128 << 20))
    assert caught.value.step == "make"
    log = (cook_env / "work/logs/make.log").read_text()
    assert "hogged" not in log
    if cgroup.detect().usable:  # memory.max: the kernel kills the step, and the sandbox says why
        assert "conary: the command ran out of memory: its cgroup's memory.max was reached" in log, log
    else:  # RLIMIT_AS: the allocation fails
        assert "MemoryError" in log


def test_control_the_hog_runs_within_the_default_limit(cook_env: Path) -> None:
    install = "d=$DESTDIR/usr/share/t; mkdir -p $d; echo x > $d/f; chown 5:6 $d/f"
    recipe = tiny_recipe(cook_env, steps={"make": HOG, "install": install})
    result = cook_recipe(recipe, _options(cook_env, keep=True))
    # The step's root is an unprivileged host id, and chown inside DESTDIR works within its range;
    # the package records the recipe's owners (root) whatever the ids on the host were.
    installed = cook_env / "work/destdir/usr/share/t/f"
    if os.geteuid() == 0:
        assert (installed.stat().st_uid, installed.stat().st_gid) == (MAPPED_ID_BASE + 5, MAPPED_ID_BASE + 6)
    entry = next(f for f in open_package(result.package_path).manifest.files if f.path == "usr/share/t/f")
    assert (entry.uid, entry.gid) == (0, 0)
    assert "hogged 536870912" in (cook_env / "work/logs/make.log").read_text()


def test_unsafe_host_root_is_loud_and_recorded(cook_env: Path) -> None:
    install = "d=$DESTDIR/usr/share/t; mkdir -p $d; echo x > $d/f"
    recipe = tiny_recipe(cook_env, steps={"install": install})
    result = cook_recipe(recipe, _options(cook_env, keep=True, unsafe_host_root=True))
    if os.geteuid() != 0:
        assert "unsafe_host_root" not in result.provenance  # without root it changes nothing
        return
    assert result.provenance["unsafe_host_root"] is True
    assert any(w.startswith("UNSAFE: the build steps ran as host root") for w in result.warnings)
    assert (cook_env / "work/destdir/usr/share/t/f").stat().st_uid == 0
    manifest = open_package(result.package_path).manifest
    assert manifest.provenance["unsafe_host_root"] is True
