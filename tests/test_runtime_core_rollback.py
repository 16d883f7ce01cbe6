"""States and rollback: after any sequence of changesets, rolling back to state N restores its exact tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conary.runtime import install_packages, list_states, remove, rollback, verify
from helpers_runtime import Keys, build, make_keys, new_root, snapshot_tree

SPECS = {
    ("red", "1"): {
        "usr/bin/red": ("file", b"red 1\n", 0o755),
        "usr/share/colors/red": b"r1\n",
        "usr/share/colors/common": b"shared\n",
        "etc/red.conf": b"r = 1\n",
    },
    ("red", "2"): {
        "usr/bin/red": ("file", b"red 2\n", 0o750),
        "usr/share/colors/red2": b"r2\n",
        "usr/share/colors/common": b"shared\n",
        "usr/lib/red/link": ("symlink", "/usr/bin/red"),
        "etc/red.conf": b"r = 2\n",
    },
    ("green", "1"): {
        "usr/bin/green": ("file", b"green\n", 0o755),
        "usr/share/colors/common": b"shared\n",
        "usr/share/colors/green": b"g" * 40000,
    },
    ("blue", "1"): {
        "opt/blue/bin/blue": ("file", b"blue\n", 0o755),
        "opt/blue/data": ("dir", 0o700),
        "opt/blue/data/x": b"x\n",
    },
    ("blue", "2"): {
        "opt/blue/bin/blue": ("file", b"blue 2\n", 0o755),
        "opt/blue/data": ("dir", 0o750),
        "opt/blue/lib": ("symlink", "bin"),
    },
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> dict[tuple[str, str], Path]:
    work = tmp_path_factory.mktemp("pkgs")
    return {key: build(work, keys, key[0], key[1], spec) for key, spec in SPECS.items()}


def test_rollback_restores_every_state_exactly(tmp_path: Path, keys: Keys, packages, cli) -> None:
    root = new_root(tmp_path / "root", keys)
    trees = {0: snapshot_tree(root)}
    steps = [
        ("install", [packages["red", "1"], packages["green", "1"]]),
        ("install", [packages["blue", "1"]]),
        ("update", [packages["red", "2"]]),
        ("remove", ["green"]),
        ("update", [packages["blue", "2"]]),
        ("remove", ["red"]),
        ("install", [packages["green", "1"], packages["red", "1"]]),
    ]
    for number, (verb, args) in enumerate(steps, start=1):
        r = cli("--root", root, verb, *args)
        assert r.code == 0, r.err
        assert f"state {number}:" in r.out
        trees[number] = snapshot_tree(root)
    assert len({tuple(t.items()) for t in trees.values()}) == len(trees)  # all distinct
    current = len(steps)
    for target in [3, 0, 5, 1, 7, 2, 4, 6]:
        r = cli("--root", root, "system", "state", "rollback", str(target))
        assert r.code == 0, r.err
        current += 1
        assert snapshot_tree(root) == trees[target], f"rollback to {target}"
        assert f"state {current}:" in r.out
        assert verify(root) == []
    states = list_states(root)
    assert states[-1].summary == "rollback to state 6"
    assert len(states) == current + 1


def test_rollback_dry_run_and_unknown_state(tmp_path: Path, keys: Keys, packages, cli) -> None:
    root = new_root(tmp_path / "root", keys)
    assert cli("--root", root, "install", packages["red", "1"]).code == 0
    tree = snapshot_tree(root)
    r = cli("--root", root, "system", "state", "rollback", "0", "--dry-run")
    assert r.code == 0 and "remove  usr/bin/red" in r.out
    assert snapshot_tree(root) == tree
    r = cli("--root", root, "system", "state", "rollback", "42")
    assert r.code == 2 and "no state 42" in r.err


class ChangesetMachine(RuleBasedStateMachine):
    """Random install/update/remove/rollback sequences; every state's tree is remembered and checked."""

    root: Path
    pkgs: dict[tuple[str, str], Path]

    def __init__(self) -> None:
        super().__init__()
        rollback(self.root, 0)  # every example starts from the empty root
        self.trees: dict[int, dict] = {}
        self._record()

    def _record(self) -> None:
        number = list_states(self.root)[-1].number
        self.trees[number] = snapshot_tree(self.root)

    @rule(key=st.sampled_from(sorted(SPECS)))
    def install(self, key: tuple[str, str]) -> None:
        install_packages(self.root, [self.pkgs[key]], init=False, check_deps=False)
        self._record()

    @rule(name=st.sampled_from(["red", "green", "blue"]))
    def remove(self, name: str) -> None:
        installed = {s.name for s in list_states(self.root)[-1].packages}
        if name in installed:
            remove(self.root, [name], check_deps=False)
            self._record()

    @rule(data=st.data())
    def roll_back(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(sorted(self.trees)))
        rollback(self.root, target)
        assert snapshot_tree(self.root) == self.trees[target]
        self._record()

    @invariant()
    def verifies(self) -> None:
        assert verify(self.root) == []


def test_random_changeset_sequences(tmp_path_factory: pytest.TempPathFactory, keys: Keys, packages) -> None:
    root = new_root(tmp_path_factory.mktemp("machine") / "root", keys)
    ChangesetMachine.root = root
    ChangesetMachine.pkgs = packages
    runner = ChangesetMachine.TestCase
    runner.settings = settings(
        max_examples=8, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
    )
    runner().runTest()
