"""Step environment, patches, logs and the `cook --help` text."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import pytest

from conary.cook import PatchSpec, step_environment
from conary.cook.logs import step_output, tail
from conary.cook.patch import PatchError, apply_patches, verify_patch
from conary.errors import InputError
from conary.recipe import Cross
from helpers_cook import sha256


def test_step_environment_is_exactly_the_documented_set() -> None:
    env = step_environment(name="hello", version="2.10", jobs=3, source_date_epoch=1234)
    assert env["DESTDIR"] == "/destdir"
    assert env["MAKEFLAGS"] == "-j3"
    assert env["SOURCE_DATE_EPOCH"] == "1234"
    assert env["LC_ALL"] == "C" and env["TZ"] == "UTC"
    assert env["HOME"] == "/build"
    assert env["CFLAGS"] == "-O2 -g -ffile-prefix-map=/build=/usr/src/hello-2.10"
    assert env["CXXFLAGS"] == env["CFLAGS"]
    assert "CC" not in env
    assert not set(env) & {k for k in os.environ if k not in env}  # nothing inherited


def test_recipe_environment_goes_on_top_but_keeps_the_prefix_map() -> None:
    env = step_environment(
        name="x",
        version="1",
        jobs=1,
        source_date_epoch=0,
        recipe_env={"CFLAGS": "-Os", "LDFLAGS": "-Wl,-z,now", "LC_ALL": "C.UTF-8"},
    )
    assert env["CFLAGS"] == "-Os -ffile-prefix-map=/build=/usr/src/x-1"
    assert env["LDFLAGS"] == "-Wl,-z,now"
    assert env["LC_ALL"] == "C.UTF-8"


def test_cross_environment() -> None:
    cross = Cross(target="aarch64-linux-gnu", sysroot="/mnt/lfs", cross_tools="/tools", cc="clang")
    env = step_environment(name="x", version="1", jobs=1, source_date_epoch=0, cross=cross)
    assert env["CC"] == "clang"
    assert env["CXX"] == "aarch64-linux-gnu-g++"
    assert env["STRIP"] == "aarch64-linux-gnu-strip"
    assert env["LFS"] == "/mnt/lfs" and env["LFS_TGT"] == "aarch64-linux-gnu"
    assert env["PATH"].startswith("/tools/bin:")


PATCH = """--- a/greeting.txt
+++ b/greeting.txt
@@ -1 +1 @@
-hello
+hello, patched
"""


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "greeting.txt").write_text("hello\n")
    return src


def test_patches_verify_then_apply(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    patch = tmp_path / "fix.patch"
    patch.write_text(PATCH)
    spec = PatchSpec("fix.patch", sha256(patch), 1, "patches.files[0]")
    sums = apply_patches([(spec, verify_patch(spec, tmp_path))], src, tmp_path / "patch.log")
    assert (src / "greeting.txt").read_text() == "hello, patched\n"
    assert sums == [sha256(patch)]
    assert "-N --batch" in (tmp_path / "patch.log").read_text()


def test_patch_checksum_mismatch_names_the_key(tmp_path: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text(PATCH)
    spec = PatchSpec("fix.patch", "sha256:" + "1" * 64, 1, "patches.files[2]")
    with pytest.raises(InputError) as caught:
        verify_patch(spec, tmp_path)
    assert caught.value.where == "patches.files[2].checksum"
    assert caught.value.what == (
        f"checksum mismatch for patch {patch}: expected sha256:{'1' * 64}, got {sha256(patch)}"
    )


def test_patch_that_does_not_apply(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    (src / "greeting.txt").write_text("goodbye\n")
    patch = tmp_path / "fix.patch"
    patch.write_text(PATCH)
    spec = PatchSpec("fix.patch", None, 1, "patches.files[0]")
    with pytest.raises(PatchError) as caught:
        apply_patches([(spec, verify_patch(spec, tmp_path))], src, tmp_path / "patch.log")
    assert (
        caught.value.what == f"patch fix.patch failed to apply (exit code 1; log: {tmp_path / 'patch.log'})"
    )
    assert caught.value.where == "patches.files[0]"
    assert not list(src.glob("*.orig"))  # --no-backup-if-mismatch


def test_logs_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "make.log"
    live = io.BytesIO()
    with step_output(log, live=True, live_stream=live) as fd:
        os.write(fd, "".join(f"line {i}\n" for i in range(40)).encode())
    assert live.getvalue() == log.read_bytes()
    assert tail(log) == [f"line {i}" for i in range(10, 40)]
    assert tail(tmp_path / "missing.log") == []


def test_cook_help_explains_every_option(conary_bin) -> None:
    from conary.cli.main import build_parser

    r = conary_bin("cook", "--help")
    assert r.returncode == 0
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cook = sub.choices["cook"]
    options = [opt for action in cook._actions for opt in action.option_strings if action.help]
    assert len(options) == len([o for a in cook._actions for o in a.option_strings])  # all have help
    for option in options:
        assert option in r.stdout
    for option in (
        "--output",
        "--source-cache",
        "--mirror",
        "--fetch-only",
        "--hermetic",
        "--no-hermetic",
        "--sysroot",
        "--jobs",
        "--workdir",
        "--keep",
        "--key",
        "--source-date-epoch",
        "--offline",
    ):
        assert option in options
    assert "/build" in r.stdout and "/destdir" in r.stdout
