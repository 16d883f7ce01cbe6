"""`conary bootstrap run|status|why|clean|resume` over a fixture profile of six real C packages in
three stages, on the host seed: stages in order, one checkpoint store, changes that rebuild exactly
a package and what stands on it, failures that name the package, step, log and its last lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conary.graph import CheckpointStore
from helpers_bootstrap import PACKAGES, make_fixture_tree

pytestmark = pytest.mark.slow


def conary(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conary", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"conary {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def work(tmp_path: Path) -> Path:
    profile = make_fixture_tree(tmp_path / "tree")
    work = tmp_path / "work"
    conary("bootstrap", "init", "--target", "x86_64", "--profile", profile, "--seed", "host", "--work", work)
    return work


def actions(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """package -> action from the one-line-per-event progress on stderr."""
    out = {}
    for line in result.stderr.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "conary:" and parts[3] != "start":
            out[parts[4]] = parts[3]
    return out


def status(work: Path) -> dict[str, dict[str, object]]:
    data = json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)
    return {p["name"]: {**p, "stage": s["name"]} for s in data["stages"] for p in s["packages"]}


def test_run_builds_stages_in_order_then_nothing(work: Path) -> None:
    # Before a run, stage1's packages are pending; later stages wait for the earlier ones.
    assert {n: p["state"] for n, p in status(work).items()} == {"alpha": "pending", "bravo": "pending"}
    first = conary("bootstrap", "run", "--work", work)
    assert actions(first) == {name: "built" for _, name, _ in PACKAGES}
    assert [line.split(":")[0] for line in first.stdout.splitlines()[:4]] == [
        "seed",
        "stage1",
        "base",
        "conary",
    ]
    done = status(work)
    assert {name: (p["stage"], p["state"]) for name, p in done.items()} == {
        name: (stage, "done") for stage, name, _ in PACKAGES
    }
    assert all(len(str(p["key"])) == 64 and Path(str(p["log"])).exists() for p in done.values())
    # The packages of a later stage were built in a root holding the earlier stages' programs.
    charlie = work / "repo" / "base" / "charlie-1.0-1.x86_64.ccs"
    extracted = work.parent / "charlie"
    conary("ccs", "extract", charlie, extracted)
    ran = subprocess.run([extracted / "usr/bin/charlie"], capture_output=True, text=True, check=True)
    assert ran.stdout == "charlie built on alpha built on none\n"

    again = conary("bootstrap", "run", "--work", work)
    assert set(actions(again).values()) == {"cached"}
    with CheckpointStore(work / "state") as store:
        assert len(store.cooks()) == len(PACKAGES)


def test_the_work_dir_signs_with_its_own_key_whoever_runs_it(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packages are signed by WORK/keys/bootstrap, not the user's default key, so a run by someone
    else (here: other XDG dirs, so another default key) resumes on the same checkpoints and builds
    new packages in roots made of the old ones."""
    conary("bootstrap", "stage1", "--work", work)
    pub = work / "keys" / "bootstrap.pub"
    alpha = work / "repo" / "stage1" / "alpha-1.0-1.x86_64.ccs"
    assert conary("ccs", "verify", "--trust", pub, alpha).returncode == 0
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    rest = conary("bootstrap", "run", "--work", work)
    expected = {name: "cached" if stage == "stage1" else "built" for stage, name, _ in PACKAGES}
    assert actions(rest) == expected, rest.stderr
    charlie = work / "repo" / "base" / "charlie-1.0-1.x86_64.ccs"
    assert conary("ccs", "verify", "--trust", pub, charlie).returncode == 0
    assert not (tmp_path / "XDG_CONFIG_HOME" / "conary" / "keys" / "default").exists()


def test_a_change_rebuilds_exactly_the_package_and_what_stands_on_it(work: Path) -> None:
    conary("bootstrap", "run", "--work", work)
    tree = work.parent / "tree" / "recipes"
    # A build flag that leaves the output as it was: alpha is rebuilt, its output digest is the
    # same (cutoff), and nothing after it is rebuilt.
    alpha = tree / "alpha.recipe.toml"
    alpha.write_text(alpha.read_text().replace("cc -O2 ", "cc -O2 -Wall "))
    why = conary("bootstrap", "why", "alpha", "--work", work).stdout
    assert "-Wall" in why and why.count("\n  + recipe:build.make") == 1
    result = conary("bootstrap", "run", "--work", work)
    assert actions(result) == {"alpha": "cutoff", **{n: "cached" for _, n, _ in PACKAGES if n != "alpha"}}

    # A change of alpha's output: alpha and every package whose build root holds it (the later
    # stages) are built again; bravo, beside it in stage1, is not. charlie embeds alpha's output
    # and echo charlie's, so theirs change; delta and foxtrot come out as before (cutoff).
    alpha.write_text(alpha.read_text().replace("""-DNAME='"alpha"'""", """-DNAME='"alpha2"'"""))
    result = conary("bootstrap", "run", "--work", work)
    assert actions(result) == {
        "alpha": "built",
        "bravo": "cached",
        "charlie": "built",
        "delta": "cutoff",
        "echo": "built",
        "foxtrot": "cutoff",
    }
    why = conary("bootstrap", "why", "charlie", "--work", work).stdout
    assert "nothing changed" in why


def test_failure_names_package_step_log_and_tail_then_resume_retries(work: Path) -> None:
    tree = work.parent / "tree" / "recipes"
    delta = tree / "delta.recipe.toml"
    good = delta.read_text()
    delta.write_text(
        good.replace("upstream=none", "upstream=none\necho 'delta: the compiler is on strike' >&2; exit 3")
    )
    failed = conary("bootstrap", "run", "--work", work, "--keep-going", check=False)
    assert failed.returncode == 1
    assert "delta failed at step make; log: " in failed.stdout
    assert "| delta: the compiler is on strike" in failed.stdout
    log = failed.stdout.split("delta failed at step make; log: ")[1].split()[0]
    assert Path(log).name == "make.log" and "on strike" in Path(log).read_text()
    # --keep-going built charlie, which does not depend on delta; the stage failed, so the next
    # stage did not start.
    assert actions(failed)["charlie"] == "built"
    assert "echo" not in actions(failed)
    assert "fix the failure, then run 'conary bootstrap resume'" in failed.stdout
    states = status(work)
    assert states["delta"]["state"] == "failed" and states["charlie"]["state"] == "done"

    delta.write_text(good)
    resumed = conary("bootstrap", "resume", "--work", work)
    assert actions(resumed)["delta"] == "built" and actions(resumed)["charlie"] == "cached"
    assert {p["state"] for p in status(work).values()} == {"done"}


def test_stage_command_runs_earlier_stages_only_and_clean_forgets_a_stage(work: Path) -> None:
    result = conary("bootstrap", "base", "--work", work)
    assert set(actions(result)) == {"alpha", "bravo", "charlie", "delta"}
    states = status(work)
    assert states["charlie"]["state"] == "done" and states["echo"]["state"] == "pending"
    removed = conary("bootstrap", "clean", "--stage", "base", "--work", work).stdout
    assert "repo/base" in removed
    assert status(work)["charlie"]["state"] == "pending"
    again = conary("bootstrap", "base", "--work", work)
    # Built again, to the same output as the forgotten packages (the build is reproducible).
    assert actions(again) == {"alpha": "cached", "bravo": "cached", "charlie": "cutoff", "delta": "cutoff"}
    conary("bootstrap", "clean", "--work", work)
    assert sorted(p.name for p in work.iterdir()) == ["bootstrap.toml", "keys"]


def test_unknown_stage_and_package_are_one_line(work: Path) -> None:
    result = conary("bootstrap", "why", "zulu", "--work", work, check=False)
    assert result.returncode == 2 and "no stage of profile fixture builds zulu" in result.stderr
    assert result.stderr.count("\n") == 1
    result = conary("bootstrap", "status", "--work", work.parent / "nowhere", check=False)
    assert result.returncode == 2 and "not a bootstrap work dir" in result.stderr
