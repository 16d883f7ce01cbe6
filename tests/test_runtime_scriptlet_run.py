"""Scriptlets run chrooted into the target root, sandboxed without network, and fail precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers_runtime_repo import make_shell_root, tcp_listener, tree_snapshot

from conary.errors import InputError
from conary.runtime.scriptlets import ScriptletError, run_scriptlet, scriptlet_argv


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_shell_root(tmp_path / "root")


@pytest.mark.parametrize("mode", ["always", "auto", "never"])
def test_post_install_writes_into_the_root(root: Path, mode: str) -> None:
    run_scriptlet(
        root, "hello", "post_install", 'echo "$CONARY_PACKAGE $CONARY_SCRIPTLET" > /etc/marker\n', mode
    )
    assert (root / "etc/marker").read_text() == "hello post_install\n"


def test_sandboxed_scriptlet_cannot_reach_the_network(root: Path) -> None:
    # busybox nc connects by address without name service lookups (a static wget would need NSS).
    script = (
        "if echo hello | nc -w 3 127.0.0.1 {port} > /tmp/reply; then echo reached > /result; "
        "else echo blocked > /result; fi\n"
    )
    with tcp_listener() as (port, accepted):
        run_scriptlet(root, "net", "post_install", script.format(port=port), "always")
        assert (root / "result").read_text() == "blocked\n"
        assert accepted == []
        # The same script outside the sandbox does reach the server: the check above can fail.
        run_scriptlet(root, "net", "post_install", script.format(port=port), "never")
        assert (root / "result").read_text() == "reached\n"
        assert len(accepted) == 1


def test_scriptlet_cannot_write_outside_the_root(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside.txt"
    script = f"echo escaped > {outside} 2>/dev/null; cd /; cd ../../..; echo escaped > escape.txt; exit 0\n"
    run_scriptlet(root, "jail", "post_install", script, "always")
    assert not outside.exists()
    assert not (tmp_path / "escape.txt").exists()
    assert (root / "escape.txt").read_text() == "escaped\n"  # '..' of the root's / is itself


def test_failing_scriptlet_reports_exit_code_and_output_and_leaves_root(root: Path) -> None:
    before = tree_snapshot(root)
    with pytest.raises(ScriptletError) as err:
        run_scriptlet(
            root, "broken", "pre_install", "echo checking disk space\necho not enough >&2\nexit 7\n", "always"
        )
    message = err.value.render()
    assert "pre_install scriptlet of broken failed with exit code 7" in message
    assert "checking disk space | not enough" in message
    assert tree_snapshot(root) == before


def test_missing_shell_is_a_precise_error(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ScriptletError, match=r"/bin/sh is missing or not executable in the root"):
        run_scriptlet(bare, "p", "post_install", "true", "always")


def test_bad_mode_and_kind_are_input_errors(root: Path) -> None:
    with pytest.raises(InputError, match="invalid sandbox mode"):
        run_scriptlet(root, "p", "post_install", "true", "sometimes")
    with pytest.raises(InputError, match="unknown scriptlet kind"):
        run_scriptlet(root, "p", "post_upgrade", "true", "never")


def test_shebang_selects_the_interpreter() -> None:
    assert scriptlet_argv("#!/bin/busybox sh\necho hi\n", "p-post_install")[:3] == [
        "/bin/busybox",
        "sh",
        "-c",
    ]
    assert scriptlet_argv("echo hi\n", "p-post_install")[:2] == ["/bin/sh", "-c"]


def test_shebang_script_runs(root: Path) -> None:
    run_scriptlet(root, "p", "post_remove", "#!/bin/busybox sh\necho via-busybox > /etc/shebang\n", "always")
    assert (root / "etc/shebang").read_text() == "via-busybox\n"
