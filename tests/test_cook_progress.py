"""Without a terminal (a CI log), cook prints one line as each step starts, with the time since the
cook began, so a long build is never silent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers_cook import tiny_recipe

LINE = re.compile(r"^cook: +(\d+\.\d)s (.+)$")


@pytest.fixture
def cook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return tmp_path


def test_one_line_per_step_with_elapsed_time_without_a_terminal(cli, cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env)
    r = cli("cook", "--output", cook_env / "dist", "--source-cache", cook_env / "cache", recipe)
    assert r.code == 0, r.err
    lines = [line for line in r.err.splitlines() if line.startswith("cook:")]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    steps = [m.group(2) for m in parsed if m]
    assert steps[0] == "tinyproj: fetch tinyproj-1.0.tar.gz"
    assert steps[1:6] == [f"tinyproj: {s}" for s in ("unpack", "patch", "configure", "make", "check")]
    assert steps[6:8] == ["tinyproj: install", "tinyproj: package"]
    assert steps[-1] == "tinyproj: done"
    # Packaging reports percentages; the log gets one line per phase, not one per percent.
    assert not any("%" in step for step in steps)
    assert len(steps) == len(set(steps))
    times = [float(m.group(1)) for m in parsed if m]
    assert times == sorted(times)


def test_json_output_keeps_stderr_free_of_step_lines(cli, cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env)
    r = cli("cook", "--json", "--output", cook_env / "dist", "--source-cache", cook_env / "cache", recipe)
    assert r.code == 0, r.err
    assert not [line for line in r.err.splitlines() if line.startswith("cook:")]
