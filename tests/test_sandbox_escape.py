"""Real escape attempts from inside the sandbox, as root and as nobody, each beside a control that shows
the same attempt working where nothing protects against it."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary.sandbox import Bind, build_spec, minimal_env, run
from conary.sandbox.privileges import KEPT_MASK
from conary.sandbox.spec import MAPPED_ID_BASE
from helpers_sandbox import NOBODY, SETPRIV, nobody_command, nobody_workspace, run_as_nobody

# Run with python3 inside the sandbox (and, for the controls, on the host); prints one JSON object.
ESCAPE_PY = r"""
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
out = {}
def failed():
    return errno.errorcode.get(ctypes.get_errno(), "?")
with open("/proc/self/status") as status:
    for line in status:
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp"):
            out[key] = value.strip()
class Handle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("data", ctypes.c_ubyte * 128)]
build = sys.argv[1]
mine, mount_id = Handle(128), ctypes.c_int()
done = libc.name_to_handle_at(-100, build.encode(), ctypes.byref(mine), ctypes.byref(mount_id), 0)
out["name_to_handle_at"] = "ok" if done == 0 else failed()
# The handle of the root of the filesystem /build lives on, taken on the host: opening it would show
# the host's whole filesystem past every bind.
kind, data = os.environ["ROOT_HANDLE"].split(":")
raw = bytes.fromhex(data)
root = Handle(len(raw), int(kind))
ctypes.memmove(root.data, raw, len(raw))
anchor = os.open(build, os.O_RDONLY | os.O_DIRECTORY)
fd = libc.open_by_handle_at(anchor, ctypes.byref(root), os.O_RDONLY | os.O_DIRECTORY)
out["open_by_handle_at"] = ("ok:" + " ".join(sorted(os.listdir(fd)))) if fd >= 0 else failed()
# The host control (argv[2] == "control") never writes: there, these writes would land on the host.
targets = []
if sys.argv[2:] != ["control"]:
    targets = ["/usr/escape", "/etc/escape", "/escape", "/proc/self/root/escape",
               "/proc/self/root/usr/escape", "/proc/1/root/escape", "/proc/1/root/usr/escape",
               "/proc/self/cwd/../escape"]
if targets:
    targets += [f"/proc/{p}/cwd/escape" for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())]
    targets += [build + "/proc-self-root-works"]
for path in targets:
    try:
        with open(path if not path.startswith(build) else "/proc/self/root" + path, "w") as handle:
            handle.write("x")
        out["write:" + path] = "ok"
    except OSError as err:
        out["write:" + path] = errno.errorcode.get(err.errno, "?")
os.makedirs(build + "/mnt", exist_ok=True)
out["mount"] = "ok" if libc.mount(b"tmpfs", (build + "/mnt").encode(), b"tmpfs", 0, None) == 0 else failed()
child = os.fork()
if child == 0:
    os._exit(0 if libc.unshare(0x10000000) == 0 else ctypes.get_errno())
code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
out["unshare_user"] = "ok" if code == 0 else errno.errorcode.get(code, "?")
target = int(os.environ["OUTSIDE_PID"])
if libc.ptrace(16, target, None, None) == 0:  # PTRACE_ATTACH
    out["ptrace_outside"] = "ok"
    libc.ptrace(17, target, None, None)  # PTRACE_DETACH
else:
    out["ptrace_outside"] = failed()
print(json.dumps(out))
"""

# Every place a step may write to, and one escape route per line; each must be refused.
_ESCAPES = (
    "/usr/escape",
    "/etc/escape",
    "/escape",
    "/proc/self/root/escape",
    "/proc/self/root/usr/escape",
    "/proc/1/root/escape",
    "/proc/1/root/usr/escape",
    "/proc/self/cwd/../escape",
)


def _handle_of(path: str) -> str:
    """name_to_handle_at of *path* on the host, as TYPE:HEX."""
    libc = ctypes.CDLL(None, use_errno=True)

    class Handle(ctypes.Structure):
        _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("data", ctypes.c_ubyte * 128)]

    handle, mount_id = Handle(128), ctypes.c_int()
    assert libc.name_to_handle_at(-100, path.encode(), ctypes.byref(handle), ctypes.byref(mount_id), 0) == 0
    return f"{handle.type}:{bytes(handle.data[: handle.bytes]).hex()}"


def _mount_root(path: Path) -> str:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


@pytest.fixture(scope="module")
def outside() -> Iterator[subprocess.Popen[bytes]]:
    """A host process no sandbox may trace."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _environment(build: Path, outside_pid: int) -> dict[str, str]:
    return {"ROOT_HANDLE": _handle_of(_mount_root(build)), "OUTSIDE_PID": str(outside_pid)}


@pytest.fixture(scope="module")
def as_root(tmp_path_factory: pytest.TempPathFactory, outside: subprocess.Popen[bytes]) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("escape-root")
    build, destdir = tmp / "build", tmp / "destdir"
    build.mkdir()
    destdir.mkdir()
    (build / "escape.py").write_text(ESCAPE_PY)
    spec = build_spec(build, destdir, env=minimal_env(_environment(build, outside.pid)))
    out = tmp / "out"
    with open(out, "wb") as handle:
        code = run(spec, ["python3", "/build/escape.py", "/build"], stdout=handle, stderr=handle)
    assert code == 0, out.read_text()
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def as_nobody(outside: subprocess.Popen[bytes]) -> Iterator[dict[str, str]]:
    with nobody_workspace() as workspace:
        (workspace / "build/escape.py").write_text(ESCAPE_PY)
        env = _environment(workspace / "build", outside.pid)
        proc = run_as_nobody(workspace, ["python3", "/build/escape.py", "/build"], env=env)
        assert proc.returncode == 0, proc.stderr
        yield json.loads(proc.stdout)


@pytest.fixture(scope="module")
def on_host(tmp_path_factory: pytest.TempPathFactory, outside: subprocess.Popen[bytes]) -> dict[str, str]:
    """The controls: the same probe as root on the host, in a mount namespace of its own (its mount
    attempt must not touch the host) but with every privilege the sandbox takes away."""
    tmp = tmp_path_factory.mktemp("escape-host")
    (tmp / "escape.py").write_text(ESCAPE_PY)
    env = {**os.environ, **_environment(tmp, outside.pid)}
    proc = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private"),
            *(sys.executable, str(tmp / "escape.py"), str(tmp), "control"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(params=["root", "nobody"])
def inside(request: pytest.FixtureRequest) -> dict[str, str]:
    return request.getfixturevalue(f"as_{request.param}")


def test_controls_show_each_attempt_works_without_the_sandbox(on_host: dict[str, str]) -> None:
    assert on_host["name_to_handle_at"] == "ok"
    assert on_host["open_by_handle_at"].startswith("ok:")
    assert set(on_host["open_by_handle_at"][3:].split()) >= {"usr", "etc", "proc"}  # the host's /
    assert on_host["mount"] == "ok"
    assert on_host["unshare_user"] == "ok"
    assert on_host["ptrace_outside"] == "ok"
    assert on_host["NoNewPrivs"] == "0" and on_host["Seccomp"] == "0"


def test_file_handles_cannot_reach_past_the_build_bind(inside: dict[str, str]) -> None:
    assert inside["name_to_handle_at"] == "EPERM"
    assert inside["open_by_handle_at"] == "EPERM"


def test_writes_outside_build_destdir_tmp_fail(inside: dict[str, str]) -> None:
    for path in _ESCAPES:
        assert inside[f"write:{path}"] in ("EROFS", "EACCES", "EPERM", "ENOENT"), path
    cwd_routes = [key for key in inside if key.startswith("write:/proc/") and "/cwd/escape" in key]
    assert cwd_routes, "no other process's cwd was tried"
    for key in cwd_routes:
        assert inside[key] != "ok", key
    # The route itself works where writing is allowed: /proc/self/root leads into /build.
    assert inside["write:/build/proc-self-root-works"] == "ok"


def test_capabilities_are_the_documented_set(inside: dict[str, str]) -> None:
    for key in ("CapEff", "CapPrm", "CapBnd"):
        assert int(inside[key], 16) == KEPT_MASK, (key, inside[key])
    assert int(inside["CapInh"], 16) == 0 and int(inside["CapAmb"], 16) == 0


def test_no_new_privileges_and_seccomp_filter(inside: dict[str, str]) -> None:
    assert inside["NoNewPrivs"] == "1"
    assert inside["Seccomp"] == "2"


def test_mount_new_user_namespace_and_ptrace_outside_fail(inside: dict[str, str]) -> None:
    assert inside["mount"] == "EPERM"
    assert inside["unshare_user"] == "EPERM"
    assert inside["ptrace_outside"] in ("ESRCH", "EPERM")


# --- setuid ------------------------------------------------------------------------------------------


def _setuid_touch(directory: Path) -> Path:
    """A copy of touch(1), owned by host root and setuid: whatever it creates belongs to its euid."""
    directory.mkdir(exist_ok=True)
    os.chmod(directory, 0o755)
    tool = directory / "touch"
    shutil.copy("/usr/bin/touch", tool)
    os.chown(tool, 0, 0)
    os.chmod(tool, 0o4755)
    return tool


def test_setuid_root_binary_gains_no_host_root_as_root(tmp_path: Path) -> None:
    suid = tmp_path / "suid"
    tool = _setuid_touch(suid)
    control = Path("/tmp") / f"conary-suid-control-{os.getpid()}"
    try:
        # Control: on the host, nobody running it creates a file owned by root.
        subprocess.run([*SETPRIV, str(tool), str(control)], check=True)
        assert control.stat().st_uid == 0
    finally:
        control.unlink(missing_ok=True)
    build, destdir = tmp_path / "build", tmp_path / "destdir"
    build.mkdir(mode=0o777)
    os.chmod(build, 0o1777)  # uid 1000 inside may create its file too
    destdir.mkdir()
    for uid in (0, 1000):
        spec = build_spec(build, destdir, extra_ops=[Bind(str(suid), "/suid")])
        spec = dataclasses.replace(spec, uid=uid, gid=uid)
        code = run(spec, ["sh", "-c", f"/suid/touch /build/made-by-{uid}"])
        assert code == 0
        made = build / f"made-by-{uid}"
        assert made.stat().st_uid == MAPPED_ID_BASE + uid  # its own mapped id: neither 0 nor raised


def test_setuid_root_binary_gains_no_host_root_as_nobody() -> None:
    with nobody_workspace() as workspace:
        _setuid_touch(workspace / "build" / "suid")
        proc = run_as_nobody(workspace, ["/build/suid/touch", "/build/made"])
        assert proc.returncode == 0, proc.stderr
        assert (workspace / "build/made").stat().st_uid == NOBODY


# --- lifetimes ---------------------------------------------------------------------------------------


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, seconds: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _kill_caller_and_scan(command: list[str], env: dict[str, str] | None = None) -> None:
    caller = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The outer child, the init, the shell and its two sleeps.
        assert _wait_for(lambda: len(_descendants(caller.pid)) >= 5), "the sandbox did not start"
        sandbox = _descendants(caller.pid)
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        assert _wait_for(lambda: not any(_alive(pid) for pid in sandbox)), [
            pid for pid in sandbox if _alive(pid)
        ]
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


def test_sigkill_of_conary_leaves_no_sandbox_process_as_root() -> None:
    exe = shutil.which("conary") or str(Path(sys.executable).with_name("conary"))
    _kill_caller_and_scan([exe, "sandbox", "run", "--", "sh", "-c", "sleep 300 & sleep 301; wait"])


def test_sigkill_of_the_caller_leaves_no_sandbox_process_as_nobody() -> None:
    with nobody_workspace() as workspace:
        command, env = nobody_command(workspace, ["sh", "-c", "sleep 300 & sleep 301; wait"])
        _kill_caller_and_scan(command, env)


# --- conary sandbox check ----------------------------------------------------------------------------


def _check_lines(stdout: str) -> dict[str, str]:
    return {line[7:].split("  ")[0].strip(): line[2:5].strip() for line in stdout.splitlines()[1:]}


def test_sandbox_check_reports_every_protection_on_as_root(conary_bin) -> None:  # type: ignore[no-untyped-def]
    proc = conary_bin("sandbox", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("sandbox works (root mapped to an unprivileged id)\n")
    states = _check_lines(proc.stdout)
    assert set(states) == {
        "user namespace",
        "capabilities",
        "no_new_privs",
        "seccomp",
        "nosuid,nodev",
        "death signal",
        "memory limit",
        "process limit",
    }
    assert set(states.values()) == {"on"}
    assert "uid 0 inside is host uids 1600000000-1600065535" in proc.stdout
    assert "17179869184 by RLIMIT_AS (" in proc.stdout
    assert "4096 by RLIMIT_NPROC (" in proc.stdout


def test_sandbox_check_as_nobody() -> None:
    exe = shutil.which("conary") or str(Path(sys.executable).with_name("conary"))
    proc = subprocess.run([*SETPRIV, exe, "sandbox", "check", "--json"], capture_output=True, text=True)
    if proc.returncode != 0 and "Permission denied" in proc.stderr:
        pytest.skip("the virtualenv is not readable by nobody here")  # a checkout under /root
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["mode"] == "with a user namespace"
    found = {p["name"]: p for p in report["protections"]}
    assert found["user namespace"]["reason"] == f"uid 0 inside is host uid {NOBODY}"
    assert all(p["on"] for p in report["protections"])


def test_check_sees_a_protection_that_is_off() -> None:
    # The control: a sandbox that keeps host root (as scriptlets do) is reported as such.
    from conary.sandbox import SandboxSpec, base_ops, host_toolchain_ops
    from conary.sandbox.inspect import protections

    spec = SandboxSpec(operations=(*base_ops(), *host_toolchain_ops()), env=minimal_env(), host_root=True)
    found = {p.name: p for p in protections(spec)}
    assert not found["user namespace"].on
    assert found["user namespace"].reason.startswith("uid 0 inside is host root")
    assert not found["memory limit"].on
    assert found["memory limit"].reason.startswith("unlimited: no RLIMIT_AS set (")
    assert found["seccomp"].on and found["capabilities"].on  # those hold in every mode
