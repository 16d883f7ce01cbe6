"""The acceptance checks of the hermetic sandbox, in real namespaces, as root and as nobody."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary.sandbox import build_spec, minimal_env, run
from helpers_sandbox import PROBE, nobody_workspace, parse_probe, run_as_nobody

SECRET = "s3cr3t-do-not-leak"


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1; connections queue in its backlog."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    build, destdir = tmp_path / "build", tmp_path / "destdir"
    build.mkdir()
    destdir.mkdir()
    return build, destdir


def _probe(dirs: tuple[Path, Path], port: int, tmp_path: Path, **changes: object) -> dict[str, str]:
    spec = build_spec(*dirs, env=minimal_env({"PORT": str(port), "CONARY_PROBE_GIVEN": "yes"}))
    spec = dataclasses.replace(spec, **changes)
    out = tmp_path / "probe.out"
    with open(out, "wb") as handle:
        code = run(spec, ["sh", "-c", PROBE], stdout=handle, stderr=handle)
    assert code == 0, out.read_text()
    return parse_probe(out.read_text())


def _assert_isolated(result: dict[str, str]) -> None:
    pids = result["pids"].split()
    # The init, the probe shell and the pipeline listing /proc: a handful of small pids, nothing else.
    assert "1" in pids and len(pids) <= 8 and all(int(pid) <= 8 for pid in pids), pids
    assert result["pid1"].startswith("python"), result["pid1"]
    assert result["hostname"] == "conary-sandbox"
    assert result["tcp"] == "closed"
    assert result["dns"] == "failed"
    assert result["localhost"] in ("127.0.0.1", "::1")  # name lookups work; only the network is gone
    for path in ("/usr/probe", "/etc/probe", "/probe", "/dev/probe"):
        assert result[f"write:{path}"] == "denied", path
    for path in ("/build/probe", "/destdir/probe", "/tmp/probe"):
        assert result[f"write:{path}"] == "ok", path
    assert result["visible:/root"] == "no"
    assert result["visible:/home"] == "no"
    assert result["visible:/usr/bin"] == "yes"
    assert result["visible:/etc/alternatives"] == "yes"
    assert result["secret"] == "unset"
    assert result["given"] == "yes"


def test_host_sees_what_the_sandbox_must_not(listener: int) -> None:
    # The controls: every isolation assertion below would fail if run on the host.
    with socket.create_connection(("127.0.0.1", listener), timeout=5):
        pass
    assert Path("/root").exists()
    assert len([name for name in os.listdir("/proc") if name.isdigit()]) > 8
    assert socket.gethostname() != "conary-sandbox"


@pytest.mark.parametrize("user_namespace", [None, True], ids=["root", "root-in-userns"])
def test_isolation_as_root(
    dirs: tuple[Path, Path],
    listener: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    user_namespace: bool | None,
) -> None:
    monkeypatch.setenv("CONARY_PROBE_SECRET", SECRET)
    result = _probe(dirs, listener, tmp_path, user_namespace=user_namespace)
    _assert_isolated(result)
    assert result["uid"] == "0"
    build, destdir = dirs
    assert (build / "probe").exists() and (destdir / "probe").exists()
    assert not Path("/usr/probe").exists() and not Path("/probe").exists()


def test_network_true_keeps_the_host_network(dirs: tuple[Path, Path], listener: int, tmp_path: Path) -> None:
    result = _probe(dirs, listener, tmp_path, network=True)
    assert result["tcp"] == "open"
    assert result["hostname"] == "conary-sandbox"


def test_isolation_as_nobody(listener: int) -> None:
    with nobody_workspace() as workspace:
        proc = run_as_nobody(
            workspace,
            ["sh", "-c", PROBE],
            env={"PORT": str(listener), "CONARY_PROBE_GIVEN": "yes"},
            extra_env={"CONARY_PROBE_SECRET": SECRET},
        )
        assert proc.returncode == 0, proc.stderr
        result = parse_probe(proc.stdout)
        _assert_isolated(result)
        assert result["uid"] == "0"  # root inside, mapped to nobody outside
        probe = workspace / "build" / "probe"
        assert probe.exists() and probe.stat().st_uid == 65534


def test_blocked_user_namespaces_are_reported_with_the_fix() -> None:
    # A user namespace whose max_user_namespaces is 0 cannot create another one: the sandbox must say
    # which knob blocks it and how to lift it, instead of failing somewhere inside.
    with nobody_workspace() as workspace:
        block = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
        proc = run_as_nobody(
            workspace,
            ["true"],
            prefix=["unshare", "--user", "--map-root-user", "sh", "-c", block, "sh"],
            as_nobody=False,
            userns=True,
        )
    assert proc.returncode == 99, proc.stderr
    assert "user namespaces are disabled (user.max_user_namespaces = 0)" in proc.stderr
    assert "sysctl -w user.max_user_namespaces=15000" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sandbox_leaves_no_mounts_on_the_host(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    before = Path("/proc/self/mountinfo").read_text()
    spec = build_spec(*dirs)
    assert run(spec, ["true"]) == 0
    assert Path("/proc/self/mountinfo").read_text() == before
    assert os.listdir(dirs[1]) == []


def test_a_covered_host_proc_is_reported_not_bound() -> None:
    # As in a container with masked /proc paths: something mounted over part of the host's /proc (in a
    # private mount namespace here) makes the kernel refuse a fresh procfs in a user namespace. Outside
    # any PID namespace, binding that /proc would show the host's processes, so the sandbox refuses.
    with nobody_workspace() as workspace:
        cover = 'mount --bind /dev/null /proc/uptime && exec "$@"'
        proc = run_as_nobody(
            workspace,
            ["true"],
            prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", cover, "sh"],
            as_nobody=False,
            userns=True,
        )
    assert proc.returncode == 99, proc.stderr
    assert "the kernel refuses a fresh /proc in a user namespace" in proc.stderr
    assert "Traceback" not in proc.stderr
