"""The host seed root is enough to build: cc, make, sh, tar, patch and python3 work inside."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conary.sandbox import build_spec, run
from helpers_sandbox import nobody_workspace, run_as_nobody

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from the sandbox"); return 0; }\n'
MAKEFILE = "greet: greet.c\n\t$(CC) -O2 -o $@ greet.c\n"
GREET_C = '#include <stdio.h>\nint main(void) { puts("greetings"); return 0; }\n'
OLD = "colour = red\n"
NEW = "colour = blue\n"

# Every tool the cook's steps lean on, exercised for real; each prints a marker the test looks for.
SCRIPT = r"""
set -e
cc hello.c -o /build/hello
/build/hello
make --no-print-directory greet >/dev/null
./greet
tar -cf /destdir/src.tar hello.c greet.c
tar -tf /destdir/src.tar | tr '\n' ' ' && echo
patch -p1 < change.patch >/dev/null
cat settings.txt
python3 -c 'import hashlib, json, sys; print("python", json.dumps(sys.version_info[:2]))'
sh -c 'echo "sh ok"'
"""


def _populate(build: Path) -> None:
    (build / "hello.c").write_text(HELLO_C)
    (build / "Makefile").write_text(MAKEFILE)
    (build / "greet.c").write_text(GREET_C)
    (build / "settings.txt").write_text(OLD)
    (build / "change.patch").write_text(f"--- a/settings.txt\n+++ b/settings.txt\n@@ -1 +1 @@\n-{OLD}+{NEW}")


def _check(output: str) -> None:
    assert "hello from the sandbox" in output
    assert "greetings" in output
    assert "hello.c greet.c" in output
    assert NEW.strip() in output
    assert "python [3, " in output
    assert "sh ok" in output


def test_toolchain_as_root(tmp_path: Path) -> None:
    build, destdir = tmp_path / "build", tmp_path / "destdir"
    build.mkdir()
    destdir.mkdir()
    _populate(build)
    log = tmp_path / "log"
    with open(log, "wb") as handle:
        code = run(build_spec(build, destdir), ["sh", "-c", SCRIPT], stdout=handle, stderr=handle)
    assert code == 0, log.read_text()
    _check(log.read_text())
    # What the steps wrote through /build and /destdir is on the host.
    assert (
        subprocess.run([build / "hello"], capture_output=True, text=True).stdout == "hello from the sandbox\n"
    )
    assert (destdir / "src.tar").exists()


def test_toolchain_as_nobody() -> None:
    with nobody_workspace() as workspace:
        _populate(workspace / "build")
        for path in (workspace / "build").iterdir():
            shutil.chown(path, 65534, 65534)
        proc = run_as_nobody(workspace, ["sh", "-c", SCRIPT])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _check(proc.stdout)
        assert (workspace / "build" / "hello").stat().st_uid == 65534


@pytest.mark.parametrize("tool", ["cc", "make", "tar", "patch", "python3", "sh", "perl", "ld", "as"])
def test_tool_resolves_inside(tmp_path: Path, tool: str) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    out = tmp_path / "out"
    with open(out, "wb") as handle:
        code = run(
            build_spec(tmp_path / "b", tmp_path / "d"), ["sh", "-c", f"command -v {tool}"], stdout=handle
        )
    assert code == 0
    assert out.read_text().startswith("/usr/bin/")
