"""Running one command imports only that command's module: start-up cost is the command's own."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conary.cli.main import COMMAND_MODULES, _command_in, _command_modules

# Commands that must start fast: the installer runtime's (a command missing from the table still
# works, it only loads every command module first).
RUNTIME_COMMANDS = ("install", "update", "remove", "list", "system", "key", "query", "repo")


def test_the_command_table_matches_what_the_modules_register() -> None:
    registered: dict[str, str] = {}
    for name in _command_modules():
        module = importlib.import_module(name)
        if hasattr(module, "register"):
            sub = argparse.ArgumentParser().add_subparsers()
            module.register(sub)
            registered.update(dict.fromkeys(sub.choices, name))
    assert {c: registered.get(c) for c in COMMAND_MODULES} == COMMAND_MODULES
    assert set(RUNTIME_COMMANDS) <= set(COMMAND_MODULES)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["--root", "/r", "remove", "x"], "remove"),
        (["--root=/r", "-v", "list"], "list"),
        (["ccs", "--help"], "ccs"),
        (["--help"], None),
        (["-h", "install"], None),
        (["--version"], None),
        ([], None),
    ],
)
def test_the_command_word_is_found_after_global_options(argv: list[str], command: str | None) -> None:
    assert _command_in(argv) == command


_PROBE = """
import json, sys
from conary.cli.main import main
code = main(sys.argv[1:])
heavy = ("conary.bootstrap", "conary.cook", "conary.fetch", "conary.recipe", "conary.graph",
         "conary.ccs.build")
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}), file=sys.stderr)
"""


def _probe(*argv: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=False, timeout=120
    )
    return json.loads(proc.stderr.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_runtime_commands_do_not_import_the_build_side(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert _probe("--root", str(root), "system", "init") == {"code": 0, "loaded": []}
    assert _probe("--root", str(root), "list") == {"code": 0, "loaded": []}


def test_top_level_help_still_lists_every_command(conary_bin) -> None:  # type: ignore[no-untyped-def]
    proc = conary_bin("--help")
    assert proc.returncode == 0
    for command in COMMAND_MODULES:
        assert command in proc.stdout
