"""The sandbox as data: operations, their order, the printed plan, the root helpers, the support check.

Nothing here creates a namespace; the effects are checked in the other test_sandbox_* files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conary.sandbox import (
    Bind,
    Dev,
    Dir,
    Proc,
    SandboxError,
    SandboxSpec,
    Symlink,
    Tmpfs,
    WriteFile,
    base_ops,
    build_spec,
    check_support,
    describe,
    host_toolchain_ops,
    plan,
    sysroot_ops,
)


def test_plan_puts_parents_first_and_drops_duplicates() -> None:
    ops = [
        Bind("/srv/x", "/usr/lib/x"),
        Tmpfs("/tmp"),
        Bind("/usr", "/usr"),
        Tmpfs("/tmp"),
        Proc(),
        Symlink("usr/bin", "/bin"),
        Bind("/srv/x", "/usr/lib/x"),
    ]
    assert plan(ops) == (
        Symlink("usr/bin", "/bin"),
        Proc("/proc"),
        Tmpfs("/tmp"),
        Bind("/usr", "/usr"),
        Bind("/srv/x", "/usr/lib/x"),
    )


def test_plan_keeps_the_callers_order_for_the_same_destination() -> None:
    first, second = Bind("/a", "/build", readonly=False), Bind("/b", "/build")
    assert plan([first, second]) == (first, second)
    assert plan([second, first]) == (second, first)


@pytest.mark.parametrize("dest", ["relative", "/a/../b", "/a/./b", ""])
def test_destinations_must_be_clean_absolute_paths(dest: str) -> None:
    with pytest.raises(SandboxError, match="absolute path"):
        Tmpfs(dest)


def test_destinations_are_normalised_and_sources_absolute() -> None:
    assert Dir("//etc//conary/", 0o700).dest == "/etc/conary"
    assert Bind(Path("/usr/"), "/usr").source == "/usr"
    with pytest.raises(SandboxError, match="bind source must be an absolute path"):
        Bind("usr", "/usr")


def test_each_operation_describes_itself() -> None:
    assert Bind("/srv/src", "/build", readonly=False).describe() == "bind rw /srv/src -> /build"
    assert Bind("/usr", "/usr").describe() == "bind ro /usr -> /usr"
    assert Tmpfs("/tmp", 0o1777).describe() == "tmpfs /tmp mode=1777"
    assert Dir("/etc", 0o755).describe() == "dir /etc mode=0755"
    assert Symlink("usr/lib", "/lib").describe() == "symlink /lib -> usr/lib"
    assert (
        WriteFile("/etc/hosts", "127.0.0.1 localhost\n").describe() == "file /etc/hosts mode=0644 (20 bytes)"
    )
    assert Proc().describe().startswith("proc /proc (fresh;")
    assert "null zero full random urandom tty" in Dev().describe()


def test_write_file_takes_text_or_bytes() -> None:
    assert WriteFile("/f", "ä").content == "ä".encode()
    assert WriteFile("/f", b"\x00\x01").content == b"\x00\x01"


def test_spec_rejects_bad_input() -> None:
    with pytest.raises(SandboxError, match="working directory must be an absolute path"):
        SandboxSpec(operations=(), cwd="build")
    with pytest.raises(SandboxError, match="invalid environment variable name"):
        SandboxSpec(operations=(), env={"A=B": "c"})
    with pytest.raises(SandboxError, match="invalid hostname"):
        SandboxSpec(operations=(), hostname="")


def test_describe_is_the_plan_in_execution_order(tmp_path: Path) -> None:
    spec = build_spec(tmp_path / "b", tmp_path / "d", env={"PATH": "/usr/bin", "LC_ALL": "C"})
    lines = describe(spec)
    assert lines[0] == "namespaces: " + ("user " if os.geteuid() else "") + "mount pid uts ipc net"
    assert lines.index("make / rprivate") < lines.index("root: fresh tmpfs")
    first_op = lines.index("root: fresh tmpfs") + 1
    last_op = lines.index("remount root read-only")
    assert lines[first_op:last_op] == [op.describe() for op in spec.plan]
    assert f"bind rw {tmp_path / 'b'} -> /build" in lines
    assert f"bind rw {tmp_path / 'd'} -> /destdir" in lines
    assert "bind ro /usr -> /usr" in lines
    assert lines[last_op + 1 :] == [
        "hostname: conary-sandbox",
        "network: loopback only (lo up)",
        "pivot_root into the new root, detach the old root",
        "cwd: /build",
        "env: LC_ALL=C",
        "env: PATH=/usr/bin",
        "privileges: capabilities CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID "
        "CAP_SETUID CAP_NET_BIND_SERVICE CAP_SETFCAP only; no_new_privs; seccomp filter",
        "run: the command as the child of an init (PID 1) that reaps and forwards its exit code",
    ]


def test_describe_user_namespace_network_and_chroot(tmp_path: Path) -> None:
    spec = SandboxSpec(
        operations=base_ops(), user_namespace=True, network=True, chroot_root=str(tmp_path), uid=5, gid=6
    )
    lines = describe(spec)
    assert lines[0] == "namespaces: user mount pid uts ipc"
    assert lines[1] == f"user: uid 5 gid 6 inside, mapped to host uid {os.geteuid()} gid {os.getegid()}"
    assert f"root: bind rw {tmp_path} -> /" in lines
    assert "remount root read-only" not in lines
    assert "network: host network" in lines
    assert "env: (empty)" in lines


def test_host_toolchain_is_usr_links_and_a_fresh_etc() -> None:
    ops = host_toolchain_ops()
    assert Bind("/usr", "/usr", readonly=True) in ops
    for name in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink(f"/{name}"):
            assert Symlink(os.readlink(f"/{name}"), f"/{name}") in ops
    assert Bind("/etc/alternatives", "/etc/alternatives") in ops
    dests = {op.dest for op in ops}
    assert not dests & {"/root", "/home", "/etc", "/"}
    assert all(op.readonly for op in ops if isinstance(op, Bind))
    passwd = next(op for op in ops if op.dest == "/etc/passwd")
    assert isinstance(passwd, WriteFile)
    users = [line.split(":")[0] for line in passwd.content.decode().splitlines()]
    assert users == ["root", "nobody"]


def test_host_toolchain_binds_real_directories_on_a_split_usr_host(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "usr/bin").mkdir(parents=True)
    (host / "bin").mkdir()
    (host / "lib").symlink_to("usr/lib")
    ops = host_toolchain_ops(str(host))
    assert Bind(f"{host}/bin", "/bin") in ops
    assert Symlink("usr/lib", "/lib") in ops
    assert not any(op.dest == "/etc/alternatives" for op in ops)


def test_sysroot_is_mirrored_read_only(tmp_path: Path) -> None:
    root = tmp_path / "sysroot"
    for name in ("usr/bin", "etc", "proc", "tmp", "home/user", "var/lib"):
        (root / name).mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    ops = sysroot_ops(root)
    assert ops == (
        Symlink("usr/bin", "/bin"),
        Bind(f"{root}/etc", "/etc"),
        Bind(f"{root}/usr", "/usr"),
        Bind(f"{root}/var", "/var"),
    )


def test_sysroot_without_etc_gets_the_fresh_one(tmp_path: Path) -> None:
    (tmp_path / "usr").mkdir()
    ops = sysroot_ops(tmp_path)
    assert any(op.dest == "/etc/passwd" for op in ops)
    with pytest.raises(SandboxError, match="sysroot is not a directory"):
        sysroot_ops(tmp_path / "missing")


def _fake_proc(root: Path, **knobs: str) -> Path:
    (root / "self/ns").mkdir(parents=True)
    (root / "self/ns/user").write_text("")
    for name, value in knobs.items():
        path = root / "sys" / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return root


@pytest.mark.parametrize(
    ("knob", "value", "message", "fix"),
    [
        (
            "kernel__unprivileged_userns_clone",
            "0",
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        ),
        (
            "user__max_user_namespaces",
            "0",
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            "sysctl -w user.max_user_namespaces=15000",
        ),
        (
            "kernel__apparmor_restrict_unprivileged_userns",
            "1",
            "AppArmor restricts unprivileged user namespaces",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        ),
    ],
)
def test_check_support_names_the_knob_and_the_fix(
    tmp_path: Path, knob: str, value: str, message: str, fix: str
) -> None:
    proc = _fake_proc(tmp_path, **{knob: value})
    with pytest.raises(SandboxError) as caught:
        check_support(proc=proc, privileged=False)
    assert message in caught.value.what
    assert fix in (caught.value.hint or "")
    assert caught.value.where == str(proc / "sys" / knob.replace("__", "/"))


def test_check_support_passes_when_nothing_blocks(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        kernel__unprivileged_userns_clone="1",
        user__max_user_namespaces="15000",
        kernel__apparmor_restrict_unprivileged_userns="0",
    )
    check_support(proc=proc, privileged=False)
    check_support()  # the real machine: namespaces are what the other tests use


def test_root_is_not_bound_by_the_unprivileged_knobs(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, kernel__unprivileged_userns_clone="0")
    check_support(proc=proc, privileged=True)
    with pytest.raises(SandboxError, match="unprivileged_userns_clone"):
        check_support(proc=proc, privileged=False)


def test_check_support_without_user_namespaces(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no user namespace support") as caught:
        check_support(proc=tmp_path, privileged=False)
    assert "CONFIG_USER_NS" in (caught.value.hint or "")


def test_cli_describe_prints_the_plan_without_running(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build = tmp_path / "build"
    build.mkdir()
    r = cli(
        "sandbox", "run", "--describe", "--rw", f"{build}:/build", "--ro", "/etc/hostname:/etc/hostname",
        "--env", "FOO=bar", "--cwd", "/build", "--", "touch", "/build/ran",
    )  # fmt: skip
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith("namespaces: mount pid uts ipc net")
    assert f"bind rw {build} -> /build" in lines
    assert "bind ro /etc/hostname -> /etc/hostname" in lines
    assert "bind ro /usr -> /usr" in lines
    assert "proc /proc (fresh; without a user namespace sys, sysrq-trigger, irq, bus read-only)" in lines
    assert "network: loopback only (lo up)" in lines
    assert "env: FOO=bar" in lines and "cwd: /build" in lines
    assert lines[-1] == "command: touch /build/ran"
    assert not (build / "ran").exists()


def test_cli_describe_json_network_and_sysroot(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "usr").mkdir()
    (tmp_path / "lib").symlink_to("usr/lib")
    r = cli("sandbox", "run", "--describe", "--json", "--network", "--sysroot", tmp_path, "--", "true")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["command"] == ["true"]
    assert "net" not in data["plan"][0].split()
    assert "network: host network" in data["plan"]
    assert f"bind ro {tmp_path}/usr -> /usr" in data["plan"]
    assert "symlink /lib -> usr/lib" in data["plan"]
    assert "bind ro /usr -> /usr" not in data["plan"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ro", "/nonexistent-conary-path"], "bind source does not exist"),
        (["--rw", "/tmp:relative"], "bind destination must be absolute"),
        (["--env", "NOVALUE"], "bad --env"),
        ([], "no command given"),
    ],
)
def test_cli_usage_errors_exit_2(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    r = cli("sandbox", "run", *args)
    assert r.code == 2
    assert message in r.err
    assert r.err.startswith("conary: error:")
