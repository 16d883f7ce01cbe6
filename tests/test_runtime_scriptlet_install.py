"""Scriptlets as the install command runs them: sandboxed, chrooted into the root, failing precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers_runtime_repo import build_test_packages, make_shell_root, tree_snapshot

from conary.ccs import generate_keypair


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("scriptlet-keys") / "publisher")


def _root(tmp_path: Path, cli, pub: Path) -> Path:
    root = make_shell_root(tmp_path / "root")
    assert cli("--root", root, "system", "init").code == 0
    assert cli("--root", root, "key", "add", pub).code == 0
    return root


def test_post_install_scriptlet_writes_into_the_root(cli, keys: tuple[Path, Path], tmp_path: Path) -> None:
    script = 'echo "installed by $CONARY_PACKAGE" > /etc/app-installed\n'
    built = build_test_packages(tmp_path / "pkgs", keys[0], app_scriptlets={"post_install": script})
    root = _root(tmp_path, cli, keys[1])
    r = cli(
        "--root", root, "install", built["hostlibc"], built["libfoo"], built["app"], "--sandbox", "always"
    )
    assert r.code == 0, r.err
    assert (root / "etc/app-installed").read_text() == "installed by app\n"


def test_failing_pre_install_aborts_and_leaves_the_root_unchanged(
    cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    script = "echo checking free space\necho only 3 MB left >&2\nexit 3\n"
    built = build_test_packages(tmp_path / "pkgs", keys[0], app_scriptlets={"pre_install": script})
    root = _root(tmp_path, cli, keys[1])
    before = tree_snapshot(root)
    r = cli(
        "--root", root, "install", built["hostlibc"], built["libfoo"], built["app"], "--sandbox", "always"
    )
    assert r.code == 1
    assert "pre_install scriptlet of app failed with exit code 3" in r.err
    assert "checking free space | only 3 MB left" in r.err
    assert json.loads(cli("--root", root, "list", "--json").out) == []
    after = tree_snapshot(root)
    assert {p: v for p, v in after.items() if not p.startswith(("var/lib/conary", "conary"))} == {
        p: v for p, v in before.items() if not p.startswith(("var/lib/conary", "conary"))
    }
    assert not (root / "usr/bin/app").exists()


def test_remove_scriptlets_run_around_the_removal(cli, keys: tuple[Path, Path], tmp_path: Path) -> None:
    scripts = {
        "pre_remove": "test -x /usr/bin/app && echo app-present > /etc/pre-remove\n",
        "post_remove": "test -e /usr/bin/app || echo app-gone > /etc/post-remove\n",
    }
    built = build_test_packages(tmp_path / "pkgs", keys[0], app_scriptlets=scripts)
    root = _root(tmp_path, cli, keys[1])
    r = cli(
        "--root", root, "install", built["hostlibc"], built["libfoo"], built["app"], "--sandbox", "always"
    )
    assert r.code == 0, r.err
    assert not (root / "etc/pre-remove").exists()
    r = cli("--root", root, "remove", "app", "--sandbox", "always")
    assert r.code == 0, r.err
    assert (root / "etc/pre-remove").read_text() == "app-present\n"
    assert (root / "etc/post-remove").read_text() == "app-gone\n"
