"""Running commands: exit codes, errors from inside the sandbox, timeouts, streams, lifetimes, chroot."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conary.sandbox import (
    Bind,
    SandboxError,
    SandboxSpec,
    SandboxTimeout,
    Symlink,
    base_ops,
    build_spec,
    minimal_env,
    run,
)


@pytest.fixture
def spec(tmp_path: Path) -> SandboxSpec:
    (tmp_path / "build").mkdir()
    (tmp_path / "destdir").mkdir()
    return build_spec(tmp_path / "build", tmp_path / "destdir")


def _output(spec: SandboxSpec, script: str, tmp_path: Path, **kwargs: object) -> tuple[int, str]:
    out = tmp_path / "out"
    with open(out, "wb") as handle:
        code = run(spec, ["sh", "-c", script], stdout=handle, stderr=handle, **kwargs)  # type: ignore[arg-type]
    return code, out.read_text()


def _host_processes_with(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline.split(b"\0"):
                found.append(int(name))
    return found


def _wait_until_gone(token: str) -> list[int]:
    # Killing is asynchronous; give the kernel a moment rather than asserting on the first look.
    for _ in range(100):
        left = _host_processes_with(token)
        if not left:
            return []
        time.sleep(0.05)
    return left


def test_exit_code_is_the_commands(spec: SandboxSpec) -> None:
    assert run(spec, ["true"]) == 0
    assert run(spec, ["sh", "-c", "exit 42"]) == 42


def test_death_by_signal_is_128_plus_the_signal(spec: SandboxSpec) -> None:
    assert run(spec, ["sh", "-c", "kill -KILL $$"]) == 128 + signal.SIGKILL


def test_missing_command_is_one_precise_error(spec: SandboxSpec) -> None:
    with pytest.raises(SandboxError) as caught:
        run(spec, ["no-such-tool-in-sandbox", "--flag"])
    assert caught.value.what == "cannot execute 'no-such-tool-in-sandbox': No such file or directory"
    assert "toolchain root" in (caught.value.hint or "")


def test_mount_failure_inside_the_child_reaches_the_caller(spec: SandboxSpec) -> None:
    broken = dataclasses.replace(
        spec, operations=(*spec.operations, Bind("/etc/hostname", "/usr/conary-probe"))
    )
    with pytest.raises(SandboxError) as caught:
        run(broken, ["true"])
    assert caught.value.what == "bind ro /etc/hostname -> /usr/conary-probe: Read-only file system"
    assert caught.value.where == "/usr/conary-probe"
    assert "Traceback" not in str(caught.value)


def test_operations_never_follow_symlinks_out_of_the_root(spec: SandboxSpec, tmp_path: Path) -> None:
    escape = (Symlink(str(tmp_path), "/escape"), Bind("/etc/hostname", "/escape/hostname"))
    with pytest.raises(SandboxError, match="refusing to follow symlink"):
        run(dataclasses.replace(spec, operations=(*spec.operations, *escape)), ["true"])
    assert not (tmp_path / "hostname").exists()


def test_missing_bind_source_is_reported_before_forking(spec: SandboxSpec, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(SandboxError, match="bind source does not exist") as caught:
        run(dataclasses.replace(spec, operations=(Bind(missing, "/x"),)), ["true"])
    assert caught.value.where == str(missing)


def test_missing_working_directory(spec: SandboxSpec) -> None:
    with pytest.raises(SandboxError, match="cannot enter the working directory") as caught:
        run(dataclasses.replace(spec, cwd="/nonexistent"), ["true"])
    assert caught.value.where == "/nonexistent"


def test_timeout_kills_the_whole_sandbox(spec: SandboxSpec) -> None:
    token = f"{900 + os.getpid() % 97}.{time.monotonic_ns() % 1000:03d}"
    with pytest.raises(SandboxTimeout, match=r"did not finish within 0\.5 seconds"):
        run(spec, ["sh", "-c", f"sleep {token} & sleep {token}; wait"], timeout=0.5)
    assert _wait_until_gone(token) == []


def test_processes_left_behind_die_with_the_command(spec: SandboxSpec) -> None:
    token = f"{800 + os.getpid() % 97}.{time.monotonic_ns() % 1000:03d}"
    assert run(spec, ["sh", "-c", f"(sleep {token} &); exit 3"]) == 3
    assert _wait_until_gone(token) == []


def test_streams_go_where_the_caller_says(spec: SandboxSpec, tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as out_handle, open(err, "wb") as err_handle:
        print("caller line", file=out_handle)  # buffered; run() flushes it first
        code = run(
            spec,
            ["sh", "-c", "echo to-out; echo to-err >&2; cat; echo stdin-done"],
            stdin=subprocess.DEVNULL,
            stdout=out_handle,
            stderr=err_handle.fileno(),
        )
    assert code == 0
    assert out.read_text() == "caller line\nto-out\nstdin-done\n"
    assert err.read_text() == "to-err\n"


def test_a_pipe_can_be_teed_by_the_caller(spec: SandboxSpec) -> None:
    read_end, write_end = os.pipe()
    code = run(spec, ["sh", "-c", "echo piped"], stdout=write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"piped\n"
    assert code == 0


def test_no_descriptor_of_the_caller_leaks_in(spec: SandboxSpec, tmp_path: Path) -> None:
    leaky = os.open(tmp_path / "leak", os.O_CREAT | os.O_WRONLY)
    os.set_inheritable(leaky, True)
    try:
        code, text = _output(spec, "ls /proc/self/fd", tmp_path)
    finally:
        os.close(leaky)
    assert code == 0
    assert set(text.split()) <= {"0", "1", "2", "3"}  # 3 is ls's own directory handle


def test_root_inside_cannot_undo_the_sandbox(spec: SandboxSpec, tmp_path: Path) -> None:
    _, text = _output(spec, "mount -o remount,rw /usr && echo remounted || echo refused", tmp_path)
    assert "refused" in text and "remounted" not in text
    _, text = _output(spec, "grep CapBnd /proc/self/status", tmp_path)
    bounding = int(text.split()[1], 16)
    assert not bounding & (1 << 21)  # CAP_SYS_ADMIN


def test_identity_inside_without_a_user_namespace(spec: SandboxSpec, tmp_path: Path) -> None:
    nobody = dataclasses.replace(spec, user_namespace=False, uid=65534, gid=65534)
    code, text = _output(nobody, "id -u; id -g; touch /build/x 2>/dev/null || echo denied", tmp_path)
    assert code == 0
    assert text.split() == ["65534", "65534", "denied"]


def test_chroot_root_runs_inside_an_existing_root(tmp_path: Path) -> None:
    # A target root as the runtime's scriptlets see it: its own files, a toolchain bound in for sh.
    root = tmp_path / "target"
    (root / "var/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text("ID=conary-test\n")
    for name in ("bin", "lib", "lib64"):
        if os.path.islink(f"/{name}"):
            (root / name).symlink_to(os.readlink(f"/{name}"))
    spec = SandboxSpec(
        operations=(*base_ops(), Bind("/usr", "/usr")), chroot_root=str(root), env=minimal_env()
    )
    code, text = _output(
        spec,
        "cat /etc/os-release; echo done > /var/lib/scriptlet-ran; ls /proc | grep -c '^[0-9]'; "
        "test -e /root && echo root-visible; test -e /tmp/pytest-of-root && echo host-tmp-visible; true",
        tmp_path,
    )
    assert code == 0, text
    assert "ID=conary-test" in text
    assert "root-visible" not in text and "host-tmp-visible" not in text
    assert (root / "var/lib/scriptlet-ran").read_text() == "done\n"


def test_cli_run_forwards_the_exit_code(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("sandbox", "run", "--", "sh", "-c", "exit 7")
    assert r.code == 7


def test_cli_run_end_to_end(conary_bin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("from the host\n")
    proc = conary_bin(
        "sandbox", "run", "--rw", f"{work}:/work", "--env", "GREETING=hi", "--cwd", "/work",
        "--", "sh", "-c", 'cat input.txt; echo "$GREETING $(uname -n)" > out.txt; echo "secret=$SECRET"',
        env={**os.environ, "SECRET": "leak"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from the host\nsecret=\n"
    assert (work / "out.txt").read_text() == "hi conary-sandbox\n"


def test_callers_environment_and_command_line_are_not_readable_through_proc(  # type: ignore[no-untyped-def]
    conary_bin, tmp_path: Path
) -> None:
    # The sandbox's init is a fork of the caller; its inherited environment and command-line blocks
    # must be overwritten, or any step could read the caller's secrets from /proc/1/environ and
    # /proc/1/cmdline.
    secret_dir = tmp_path / "argv-secret-5d2a"
    secret_dir.mkdir()
    proc = conary_bin(
        "sandbox", "run", "--ro", f"{secret_dir}:/mnt", "--", "sh", "-c",
        "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat $f; echo; done | tr '\\0' ' '",
        env={**os.environ, "SECRET": "leak-through-proc-7c1e"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # The init's environment is not even readable (it is more privileged than the command); its
    # command line is, and shows only the fixed name.
    assert "/proc/1/cmdline" not in proc.stderr
    assert "leak-through-proc-7c1e" not in proc.stdout
    assert "argv-secret-5d2a" not in proc.stdout
    assert "conary-sandbox-init" in proc.stdout


def test_cli_check(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("sandbox", "check")
    assert r.code == 0
    assert r.out.startswith("sandbox works")


NESTED = """
import sys
sys.path.insert(0, "/src")
sys.path.insert(0, "/deps")
from conary.sandbox import SandboxError, build_spec, run
spec = build_spec("/build", "/destdir")
try:
    run(spec, ["sh", "-c", "touch /destdir/inner"])
except SandboxError as err:
    print("refused:", err)
    sys.exit(6)
"""


@pytest.mark.parametrize("outer_userns", [False, True], ids=["outer-root", "outer-userns"])
def test_a_sandbox_inside_a_sandbox_is_refused(spec: SandboxSpec, tmp_path: Path, outer_userns: bool) -> None:
    # A new user namespace would give uid 0 inside every capability back: the seccomp filter refuses
    # unshare(CLONE_NEWUSER), and the inner sandbox says so in one line.
    import pyseccomp

    import conary

    src = Path(conary.__file__).resolve().parent.parent
    deps = Path(pyseccomp.__file__).parent
    outer = dataclasses.replace(
        spec,
        operations=(*spec.operations, Bind(src, "/src"), Bind(str(deps), "/deps")),
        user_namespace=outer_userns,
    )
    code, text = _output(outer, f"python3 -c '{NESTED}'", tmp_path)
    assert code == 6, text
    assert text.startswith("refused: unshare: cannot create namespaces:"), text
    assert "Operation not permitted" in text and text.count("\n") == 1
    assert not (tmp_path / "destdir" / "inner").exists()


def test_root_inside_cannot_make_device_nodes(conary_bin) -> None:  # type: ignore[no-untyped-def]
    # A block device node for the host's disk would bypass every read-only mount.
    proc = conary_bin(
        "sandbox", "run", "--", "sh", "-c", "mknod /tmp/disk b 8 0 2>/dev/null && echo made || echo refused"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "refused\n"


def test_without_the_seccomp_binding_nothing_runs(
    spec: SandboxSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conary.sandbox import seccomp

    monkeypatch.setattr(seccomp, "pyseccomp", None)
    monkeypatch.setattr(seccomp, "_MISSING", "No module named 'pyseccomp'", raising=False)
    with pytest.raises(SandboxError) as caught:
        run(spec, ["touch", "/build/ran"])
    assert caught.value.what == "the seccomp filter cannot be built: No module named 'pyseccomp'"
    assert "pyseccomp" in (caught.value.hint or "") and "libseccomp2" in (caught.value.hint or "")
    assert not (tmp_path / "build" / "ran").exists()
