"""Small CLI promises: JSON where scripts need it, help that explains every argument, the same exit
code for the same mistake, a warning when a check checked nothing, and extract saying what it wrote."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from conary.cli.main import build_parser


@pytest.fixture
def package(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small signed package: an executable, a header (devel, not extracted by default), a symlink."""
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    d = tmp_path / "pkg"
    (d / "root/usr/bin").mkdir(parents=True)
    (d / "root/usr/bin/hello").write_text("#!/bin/sh\necho hello\n")
    os.chmod(d / "root/usr/bin/hello", 0o755)
    os.symlink("hello", d / "root/usr/bin/hi")
    (d / "root/usr/include").mkdir(parents=True)
    (d / "root/usr/include/hello.h").write_text("int hello(void);\n")
    (d / "ccs.toml").write_text('[package]\nname = "hello"\nversion = "1"\narch = "x86_64"\n')
    r = cli("ccs", "build", d, "--output", tmp_path / "out")
    assert r.code == 0, r.err
    return Path(r.out.strip())


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_ccs_subcommand_has_a_description_and_help_for_each_positional() -> None:
    ccs = _subparsers(build_parser())["ccs"]
    commands = _subparsers(ccs)
    assert set(commands) >= {"keygen", "build", "sign", "verify", "inspect", "extract", "export"}
    for name, sub in commands.items():
        assert sub.description, f"ccs {name} has no description"
        for action in sub._actions:
            if not action.option_strings:
                assert action.help, f"ccs {name}: positional {action.metavar or action.dest} has no help"


def test_ccs_verify_help_says_which_keys_it_trusts_without_trust(conary_bin) -> None:
    r = conary_bin("ccs", "verify", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "Without --trust, no key is trusted" in text
    assert "the public key the package carries" in text


def test_recipe_show_help_prints_single_percent_macros(conary_bin) -> None:
    r = conary_bin("recipe", "show", "--help")
    assert r.returncode == 0
    assert "%(macro)s" in r.stdout and "%%" not in r.stdout


def test_ccs_verify_json(cli, package: Path, tmp_path: Path) -> None:
    r = cli("ccs", "verify", package, "--json", "--trust", tmp_path / "keys/default.pub")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["ok"] is True and data["nevra"] == "hello-1-1.x86_64" and data["trusted"] is True
    assert len(data["signer"]) > 8 and data["content_root"]
    r = cli("ccs", "verify", tmp_path / "missing.ccs", "--json")
    assert r.code == 1 and r.out == ""
    assert json.loads(r.err)["what"] == "package not found"


def test_system_verify_json(cli, package: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert cli("--root", root, "system", "init").code == 0
    assert cli("--root", root, "install", package, "--allow-untrusted", "--nodeps").code == 0
    r = cli("--root", root, "system", "verify", "--json")
    assert (r.code, json.loads(r.out)) == (0, [])
    (root / "usr/bin/hello").write_text("changed\n")
    r = cli("--root", root, "system", "verify", "--json")
    assert r.code == 1
    assert [p["path"] for p in json.loads(r.out)] == ["usr/bin/hello"]


def test_state_diff_and_rollback_give_the_same_exit_code_for_a_missing_state(cli, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert cli("--root", root, "system", "init").code == 0
    diff = cli("--root", root, "system", "state", "diff", "0", "7")
    rollback = cli("--root", root, "system", "state", "rollback", "7")
    assert diff.code == rollback.code == 2
    assert "no state 7" in diff.err and "no state 7" in rollback.err


def test_recipe_check_of_a_directory_without_recipes_warns(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("recipe", "check", empty)
    assert r.code == 0
    assert f"{empty}: warning: *.toml: no recipe in this directory" in r.out
    assert r.out.strip().endswith("0 recipes, 0 errors, 1 warnings")
    (empty / "versions.toml").write_text('hello = "2.10"\n')
    r = cli("recipe", "check", empty, "--json")
    notes = json.loads(r.out)["notes"]
    assert [n["severity"] for n in notes] == ["warning"]
    assert "1 TOML files, none with a [package] table" in notes[0]["message"]


def test_ccs_extract_says_what_it_wrote_and_quiet_silences_it(cli, package: Path, tmp_path: Path) -> None:
    r = cli("ccs", "extract", package, tmp_path / "x")
    assert r.code == 0, r.err
    size = len("#!/bin/sh\necho hello\n")
    assert r.out == f"wrote 1 file ({size} bytes), 2 directories and 1 symlink to {tmp_path / 'x'}\n"
    r = cli("ccs", "extract", package, tmp_path / "y", "--quiet")
    assert (r.code, r.out, r.err) == (0, "", "")
    assert (tmp_path / "y/usr/bin/hello").is_file()
