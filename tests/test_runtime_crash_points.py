"""SIGKILL the real CLI at every filesystem mutation (and at random times) of install, update,
remove and rollback; after recovery each root must be exactly its old or its new tree."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conary.runtime import install_packages, list_installed, remove, verify
from helpers_runtime import Keys, build, make_keys, new_root, snapshot_tree

APP1 = {
    "usr/bin/app": ("file", b"echo app 1\n", 0o755),
    "usr/lib/app/big.dat": bytes(range(256)) * 200,  # 51 KiB: several chunks
    "usr/lib/app/keep.txt": b"unchanged\n",
    "usr/lib/app/old-only.txt": b"goes away in 2\n",
    "usr/lib/app/current": ("symlink", "big.dat"),
    "usr/share/app/one/a.txt": b"a\n",
    "etc/app.conf": b"x = 1\n",
}
APP2 = {
    "usr/bin/app": ("file", b"echo app 2\n", 0o700),
    "usr/lib/app/big.dat": bytes(range(255, -1, -1)) * 220,
    "usr/lib/app/keep.txt": b"unchanged\n",
    "usr/lib/app/current": ("symlink", "keep.txt"),
    "usr/lib/app/new/n.txt": b"new in 2\n",
    "etc/app.conf": b"x = 2\n",
}
LIB = {"usr/lib/libz/z.txt": b"zzz\n", "usr/bin/zz": ("file", b"zz\n", 0o755)}


@dataclass(frozen=True)
class Scenario:
    name: str
    root: Path  # the prepared "before" root
    argv: tuple[str, ...]
    before: dict
    after: dict
    before_packages: dict[str, str]
    after_packages: dict[str, str]


def _packages(root: Path) -> dict[str, str]:
    return {p.name: p.version for p in list_installed(root)}


def _run(root: Path, argv: tuple[str, ...], crash_after: int | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("CONARY_CRASH_AFTER_OPS", None)
    if crash_after is not None:
        env["CONARY_CRASH_AFTER_OPS"] = str(crash_after)
    return subprocess.Popen(
        [sys.executable, "-m", "conary", "--root", str(root), *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> list[Scenario]:
    work = tmp_path_factory.mktemp("crash")
    keys: Keys = make_keys(work / "keys")
    app1 = build(work, keys, "app", "1", APP1)
    app2 = build(work, keys, "app", "2", APP2)
    lib = build(work, keys, "libz", "1", LIB)
    out = []

    def prepare(name: str, argv: tuple[str, ...], setup) -> None:
        root = new_root(work / name / "before", keys)
        setup(root)
        probe = work / name / "probe"
        shutil.copytree(root, probe, symlinks=True)
        proc = _run(probe, argv)
        assert proc.wait() == 0, proc.stderr.read()
        out.append(
            Scenario(
                name, root, argv, snapshot_tree(root), snapshot_tree(probe), _packages(root), _packages(probe)
            )
        )

    prepare("install", ("install", str(app1)), lambda r: install_packages(r, [lib], init=False))
    prepare("update", ("update", str(app2)), lambda r: install_packages(r, [lib, app1], init=False))
    prepare("remove", ("remove", "app"), lambda r: install_packages(r, [lib, app1], init=False))

    def history(root: Path) -> None:
        install_packages(root, [lib], init=False)  # state 1
        install_packages(root, [app1], init=False)  # state 2
        install_packages(root, [app2], init=False)  # state 3
        remove(root, ["libz"])  # state 4

    prepare("rollback", ("system", "state", "rollback", "2"), history)
    return out


def _check_recovered(sc: Scenario, trial: Path, cli, label: str) -> str:
    r = cli("--root", trial, "system", "recover")
    assert r.code == 0, f"{label}: recover failed: {r.err}"
    tree = snapshot_tree(trial)
    packages = _packages(trial)
    if tree == sc.before:
        assert packages == sc.before_packages, f"{label}: old tree but database says {packages}"
        side = "before"
    else:
        assert tree == sc.after, f"{label}: tree is neither the old nor the new one"
        assert packages == sc.after_packages, f"{label}: new tree but database says {packages}"
        side = "after"
    assert verify(trial) == [], f"{label}: verify failed after recovery"
    leftovers = [p for p in trial.rglob(".conary-*")]
    assert leftovers == [], f"{label}: leftovers {leftovers}"
    return side


@pytest.mark.slow
def test_sigkill_at_every_filesystem_operation(scenarios: list[Scenario], tmp_path: Path, cli) -> None:
    trials = 0
    sides = {"before": 0, "after": 0}
    for sc in scenarios:
        n = 1
        while True:
            trial = tmp_path / f"{sc.name}-{n}"
            shutil.copytree(sc.root, trial, symlinks=True)
            proc = _run(trial, sc.argv, crash_after=n)
            code = proc.wait()
            if code == 0:  # N is past the last operation: the run completed
                assert snapshot_tree(trial) == sc.after
                shutil.rmtree(trial)
                break
            assert code == -signal.SIGKILL, f"{sc.name} op {n}: exit {code}: {proc.stderr.read()}"
            sides[_check_recovered(sc, trial, cli, f"{sc.name} op {n}")] += 1
            trials += 1
            shutil.rmtree(trial)
            n += 1
            assert n < 400, "runaway: the operation never completes"
        assert n > 10, f"{sc.name}: only {n} crash points"
    print(
        f"\ncrash points: {trials} SIGKILL trials, recovered to old tree {sides['before']}, "
        f"to new tree {sides['after']}"
    )
    assert trials >= 50, f"only {trials} crash points"
    assert sides["before"] and sides["after"]


@pytest.mark.slow
def test_sigkill_at_random_times(scenarios: list[Scenario], tmp_path: Path, cli) -> None:
    rnd = random.Random(1234)
    trials = 0
    for sc in scenarios:
        probe = tmp_path / f"{sc.name}-timing"
        shutil.copytree(sc.root, probe, symlinks=True)
        start = time.perf_counter()
        assert _run(probe, sc.argv).wait() == 0
        duration = time.perf_counter() - start
        shutil.rmtree(probe)
        for i in range(6):
            trial = tmp_path / f"{sc.name}-r{i}"
            shutil.copytree(sc.root, trial, symlinks=True)
            proc = _run(trial, sc.argv)
            time.sleep(rnd.uniform(0.2, 1.0) * duration)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _check_recovered(sc, trial, cli, f"{sc.name} random kill {i}")
            trials += 1
            shutil.rmtree(trial)
    print(f"\nrandom-time kills: {trials} trials")
    assert trials == 6 * len(scenarios)


def test_recover_dry_run_reports_without_changing(scenarios: list[Scenario], tmp_path: Path, cli) -> None:
    sc = next(s for s in scenarios if s.name == "update")
    trial = tmp_path / "trial"
    shutil.copytree(sc.root, trial, symlinks=True)
    assert _run(trial, sc.argv, crash_after=15).wait() == -signal.SIGKILL
    journals = sorted((trial / "var/lib/conary/journal").glob("*.json"))
    assert len(journals) == 1
    r = cli("--root", trial, "system", "recover", "--dry-run")
    assert r.code == 0 and "would roll back interrupted transaction" in r.err
    assert sorted((trial / "var/lib/conary/journal").glob("*.json")) == journals
    r = cli("--root", trial, "system", "recover")
    assert "rolled back interrupted transaction" in r.err
    assert snapshot_tree(trial) == sc.before
