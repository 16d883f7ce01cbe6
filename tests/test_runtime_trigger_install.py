"""Triggers as the install and remove commands run them, and `conary system trigger`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.helpers_runtime_repo import compile_libfoo, make_shell_root

from conary.ccs import PackageMeta, build_package, generate_keypair


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("trigger-keys") / "publisher")


def _root(tmp_path: Path, cli, pub: Path) -> Path:
    root = make_shell_root(tmp_path / "root")
    assert cli("--root", root, "system", "init").code == 0
    assert cli("--root", root, "key", "add", pub).code == 0
    return root


def test_ldconfig_fires_once_per_changeset_not_per_library(
    cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    lib, _ = compile_libfoo(tmp_path / "src")
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    for n in range(1, 4):
        shutil.copy2(lib, tree / f"usr/lib/libfoo{n}.so.{n}")
    (tree / "usr/share/doc/libs").mkdir(parents=True)
    (tree / "usr/share/doc/libs/README").write_text("three libraries\n")
    libs = build_package(
        tree, PackageMeta("threelibs", "1.0"), output_dir=tmp_path / "out", signing_key=keys[0]
    )
    doc_tree = tmp_path / "doc-tree"
    (doc_tree / "usr/share/doc/other").mkdir(parents=True)
    (doc_tree / "usr/share/doc/other/README").write_text("no libraries\n")
    docs = build_package(
        doc_tree, PackageMeta("docsonly", "1.0"), output_dir=tmp_path / "out", signing_key=keys[0]
    )

    root = _root(tmp_path, cli, keys[1])
    handler = root / "usr/sbin/ldconfig"
    handler.write_text('#!/bin/sh\necho "ldconfig $*" >> /var/log-ldconfig\n')
    handler.chmod(0o755)
    r = cli("--root", root, "install", libs, "--sandbox", "always", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["triggers"] == ["ldconfig"]
    assert (root / "var/log-ldconfig").read_text() == "ldconfig \n"
    r = cli("--root", root, "install", docs, "--sandbox", "always", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["triggers"] == []
    assert (root / "var/log-ldconfig").read_text() == "ldconfig \n"
    r = cli("--root", root, "system", "trigger", "disable", "ldconfig")
    assert r.code == 0
    r = cli("--root", root, "remove", "threelibs", "--sandbox", "always", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["triggers"] == []
    assert (root / "var/log-ldconfig").read_text() == "ldconfig \n"


def test_system_trigger_commands(cli, tmp_path: Path) -> None:
    root = make_shell_root(tmp_path / "root")
    shutil.copy2("/usr/sbin/ldconfig", root / "usr/sbin/ldconfig")
    r = cli("--root", root, "system", "trigger", "list", "--json")
    assert r.code == 0, r.err
    listed = {t["name"]: t for t in json.loads(r.out)}
    assert len(listed) == 10
    assert listed["ldconfig"]["handler_present"] is True
    assert listed["ldconfig"]["handler"] == "/usr/sbin/ldconfig"
    assert listed["depmod"]["handler_present"] is False
    assert listed["depmod"]["patterns"] == ["usr/lib/modules/**", "lib/modules/**"]
    assert all(t["enabled"] for t in listed.values())

    assert cli("--root", root, "system", "trigger", "disable", "fc-cache").code == 0
    listed = {
        t["name"]: t for t in json.loads(cli("--root", root, "system", "trigger", "list", "--json").out)
    }
    assert listed["fc-cache"]["enabled"] is False
    text = cli("--root", root, "system", "trigger", "list").out
    assert "fc-cache" in text and "(absent)" in text

    r = cli("--root", root, "system", "trigger", "show", "ldconfig")
    assert r.code == 0
    assert "handler:     /usr/sbin/ldconfig" in r.out
    assert "usr/lib/*.so*" in r.out
    r = cli("--root", root, "system", "trigger", "show", "depmod", "--json")
    assert json.loads(r.out)["handlers"][0] == "/usr/sbin/depmod"

    assert cli("--root", root, "system", "trigger", "enable", "fc-cache").code == 0
    assert (root / "etc/conary/triggers.toml").read_text() == "disabled = []\n"
    r = cli("--root", root, "system", "trigger", "enable", "nosuch")
    assert r.code == 2 and "no trigger named 'nosuch'" in r.err


def test_failing_trigger_is_reported_and_the_changeset_stays(
    cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    lib, _ = compile_libfoo(tmp_path / "src")
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    shutil.copy2(lib, tree / "usr/lib/libfoo.so.1")
    libs = build_package(tree, PackageMeta("libfoo", "1.0"), output_dir=tmp_path / "out", signing_key=keys[0])
    root = _root(tmp_path, cli, keys[1])
    handler = root / "usr/sbin/ldconfig"
    handler.write_text("#!/bin/sh\necho cache directory is read-only\nexit 5\n")
    handler.chmod(0o755)
    r = cli("--root", root, "install", libs, "--sandbox", "always")
    assert r.code == 0, r.err
    assert "trigger ldconfig failed with exit code 5; last output: cache directory is read-only" in r.err
    assert (root / "usr/lib/libfoo.so.1").is_file()
    assert [p["name"] for p in json.loads(cli("--root", root, "list", "--json").out)] == ["libfoo"]
    # The outcome still names the trigger that ran (and failed), beside the warning.
    assert cli("--root", root, "remove", "libfoo").code == 0
    r = cli("--root", root, "install", libs, "--sandbox", "always", "--json")
    assert r.code == 0, r.err
    outcome = json.loads(r.out)
    assert outcome["triggers"] == ["ldconfig"]
    assert any("trigger ldconfig failed with exit code 5" in w for w in outcome["warnings"])
