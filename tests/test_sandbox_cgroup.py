"""cgroup v2 limits of a sandboxed command: where they apply, and exactly why not where they do not.

This machine (and CI's) is a hybrid cgroup system: cgroup v2 is mounted at /sys/fs/cgroup/unified,
but memory and pids are bound to the cgroup v1 hierarchies, so the rlimits are in force. The tests
here check:
- the detection on this machine, against facts read independently (findmnt, the group's files);
- the decision on real text of a pure cgroup v2 systemd machine, given as strings;
- the step group's mechanics (joined before the init is forked, every process inside, leftovers
  killed, the group removed) on the real unified hierarchy, as root: it has no memory or pids
  controller, so memory.max and pids.max themselves are not exercised here.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary import sandbox
from conary.cook.runner import DEFAULT_MEMORY
from conary.sandbox import cgroup, runner

# --- text of real machines ---------------------------------------------------------------------------

# This machine: a hybrid layout, v1 controllers beside systemd's "unified" cgroup v2 mount.
HYBRID_MOUNTINFO = """\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/4272954a\n1:cpu:/\n0::/\n"

# Debian 12 with systemd 252, pure cgroup v2, a user's command started by
# `systemd-run --user --scope -p Delegate=yes`.
PURE_MOUNTINFO = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 23 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
27 23 0:25 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
"""
SCOPE = "/user.slice/user-1000.slice/user@1000.service/app.slice/run-r3c2e7b1d.scope"
SCOPE_DIR = "/sys/fs/cgroup" + SCOPE
PURE_CGROUP = f"0::{SCOPE}\n"
USER_CONTROLLERS = "cpu io memory pids\n"

# A container that sees the host's cgroup v2 tree read-only (Docker's default without --privileged).
CONTAINER_MOUNTINFO = """\
612 611 0:54 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
613 612 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
"""


def _facts(**changes: object) -> cgroup.Facts:
    values: dict[str, object] = {
        "mountinfo": PURE_MOUNTINFO,
        "proc_cgroup": PURE_CGROUP,
        "pid": 4242,
        "euid": 1000,
        "controllers": USER_CONTROLLERS,
        "subtree_control": "",
        "procs": "4242\n",
        "writable": True,
    }
    values.update(changes)
    return cgroup.Facts(**values)  # type: ignore[arg-type]


# --- parsing ---------------------------------------------------------------------------------------------


def test_the_cgroup2_mount_is_found_in_pure_and_hybrid_layouts() -> None:
    pure = cgroup.cgroup2_mounts(PURE_MOUNTINFO)
    assert pure == [cgroup.Mount("/sys/fs/cgroup", "/", readonly=False)]
    hybrid = cgroup.choose_mount(cgroup.cgroup2_mounts(HYBRID_MOUNTINFO))
    assert hybrid == cgroup.Mount("/sys/fs/cgroup/unified", "/", readonly=False)
    assert cgroup.cgroup2_mounts(CONTAINER_MOUNTINFO)[0].readonly
    escaped = "50 23 0:40 / /mnt/my\\040cgroups rw,relatime - cgroup2 none rw\n"
    assert cgroup.cgroup2_mounts(escaped)[0].point == "/mnt/my cgroups"
    # /sys/fs/cgroup wins over an earlier cgroup2 mount elsewhere.
    other = "45 23 0:41 / /run/elsewhere rw - cgroup2 none rw\n"
    assert cgroup.choose_mount(cgroup.cgroup2_mounts(other + PURE_MOUNTINFO)).point == "/sys/fs/cgroup"  # type: ignore[union-attr]


def test_the_own_group_is_the_0_line_mapped_through_the_mount_root() -> None:
    assert cgroup.own_cgroup(PURE_CGROUP) == SCOPE
    assert cgroup.own_cgroup(HYBRID_CGROUP) == "/"
    assert cgroup.own_cgroup("4:memory:/x\n1:cpu:/\n") is None  # cgroup v1 only
    mount = cgroup.Mount("/sys/fs/cgroup", "/", False)
    assert cgroup.group_directory(mount, SCOPE) == SCOPE_DIR
    assert cgroup.group_directory(mount, "/") == "/sys/fs/cgroup"
    # A container mounting only its own part of the hierarchy.
    part = cgroup.Mount("/sys/fs/cgroup", "/system.slice/docker-1f.scope", False)
    assert cgroup.group_directory(part, "/system.slice/docker-1f.scope/init") == "/sys/fs/cgroup/init"
    assert cgroup.group_directory(part, "/system.slice/docker-1f.scopeX") is None
    assert cgroup.group_directory(part, "/user.slice") is None


# --- the decision -------------------------------------------------------------------------------------


def test_a_delegated_scope_where_conary_is_alone_is_used_through_a_leaf() -> None:
    support = cgroup.assess(_facts())
    assert support.usable, support.reason
    assert support.parent == SCOPE_DIR
    assert support.leaf == SCOPE_DIR + "/conary.leaf"
    assert (
        support.reason
        == f"cgroup v2 group {SCOPE_DIR} is delegated to this process and offers memory and pids"
    )


def test_a_caller_already_in_its_leaf_makes_step_groups_beside_it() -> None:
    support = cgroup.assess(
        _facts(proc_cgroup=f"0::{SCOPE}/conary.leaf\n", subtree_control="memory pids\n", procs="")
    )
    assert support.usable and support.parent == SCOPE_DIR and support.leaf is None


def test_a_group_shared_with_other_processes_is_left_alone() -> None:
    support = cgroup.assess(_facts(procs="4242\n977\n"))
    assert not support.usable
    assert support.reason.startswith(
        f"cgroup v2 group {SCOPE_DIR} holds other processes than this one (1: 977), and a group with "
        "processes cannot hand controllers to child groups; run conary alone in a delegated scope: "
        "systemd-run --scope -p Delegate=yes conary"
    )


def test_a_missing_controller_is_named_with_what_the_group_offers() -> None:
    support = cgroup.assess(_facts(controllers="cpu memory\n"))
    assert (
        support.reason
        == f"cgroup v2 at {SCOPE_DIR} has no pids controller (its cgroup.controllers lists: cpu memory)"
    )
    hybrid = cgroup.assess(
        _facts(
            mountinfo=HYBRID_MOUNTINFO,
            proc_cgroup=HYBRID_CGROUP,
            controllers="hugetlb\n",
            euid=0,
            is_root=True,
        )
    )
    assert hybrid.reason == (
        "cgroup v2 at /sys/fs/cgroup/unified has no memory and no pids controller "
        "(its cgroup.controllers lists: hugetlb)"
    )
    assert "lists: nothing)" in cgroup.assess(_facts(controllers="\n")).reason


def test_root_needs_the_delegation_mark_outside_the_root_group() -> None:
    service = "/system.slice/build.service"
    facts = _facts(proc_cgroup=f"0::{service}\n", euid=0)
    refused = cgroup.assess(facts)
    assert not refused.usable
    assert refused.reason.startswith(
        "cgroup v2 group /sys/fs/cgroup/system.slice/build.service is not delegated "
        "(no trusted.delegate or user.delegate mark)"
    )
    assert cgroup.assess(_facts(proc_cgroup=f"0::{service}\n", euid=0, delegated=True)).usable
    # The root group may hold processes and still hand controllers down: no leaf needed.
    at_root = cgroup.assess(_facts(proc_cgroup="0::/\n", euid=0, is_root=True, procs="1\n4242\n"))
    assert at_root.usable and at_root.parent == "/sys/fs/cgroup" and at_root.leaf is None


def test_each_other_obstacle_is_said_precisely() -> None:
    assert cgroup.assess(_facts(writable=False)).reason == (
        f"cgroup v2 group {SCOPE_DIR} is not writable by uid 1000 (it is not delegated to it; run "
        "systemd-run --scope -p Delegate=yes conary ... (as a user: systemd-run --user --scope ...))"
    )
    v1_only = "\n".join(line for line in HYBRID_MOUNTINFO.splitlines() if "cgroup2" not in line)
    assert cgroup.assess(_facts(mountinfo=v1_only)).reason == (
        "no cgroup v2 hierarchy is mounted (/proc/self/mountinfo lists no cgroup2 mount)"
    )
    assert cgroup.assess(_facts(mountinfo=CONTAINER_MOUNTINFO)).reason == (
        "cgroup v2 at /sys/fs/cgroup is mounted read-only"
    )
    assert cgroup.assess(_facts(proc_cgroup="4:memory:/\n")).reason == (
        "this process is in no cgroup v2 group (/proc/self/cgroup has no 0:: line)"
    )
    part = PURE_MOUNTINFO.replace("0:24 / /sys/fs/cgroup", "0:24 /machine.slice /sys/fs/cgroup")
    assert cgroup.assess(_facts(mountinfo=part)).reason == (
        f"this process's cgroup {SCOPE} is not under the cgroup v2 mount at /sys/fs/cgroup "
        "(which shows /machine.slice)"
    )


# --- this machine ------------------------------------------------------------------------------------


def _expected_reason_here() -> str:
    """Why cgroup v2 is not usable here, derived without conary's parser: findmnt for the mount, the
    group's own files for the controllers."""
    found = subprocess.run(
        ["findmnt", "-n", "-r", "-t", "cgroup2", "-o", "TARGET,FSROOT,OPTIONS"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    mounts = {t: (root, opts.split(",")) for t, root, opts in (line.split(" ") for line in found if line)}
    if not mounts:
        return "no cgroup v2 hierarchy is mounted (/proc/self/mountinfo lists no cgroup2 mount)"
    target = next(
        (t for t in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified") if t in mounts), next(iter(mounts))
    )
    root, options = mounts[target]
    if "ro" in options:
        return f"cgroup v2 at {target} is mounted read-only"
    own = next(
        line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::")
    )
    directory = os.path.normpath(target + "/" + os.path.relpath(own, root))
    offered = Path(directory, "cgroup.controllers").read_text().split()
    missing = [c for c in ("memory", "pids") if c not in offered]
    if not missing:
        pytest.skip(
            f"cgroup v2 at {directory} offers memory and pids: this test is for machines where it does not"
        )
    listed = " ".join(sorted(offered)) or "nothing"
    what = " and no ".join(missing)
    return f"cgroup v2 at {directory} has no {what} controller (its cgroup.controllers lists: {listed})"


def test_detection_says_exactly_why_cgroup_v2_is_not_used_here(cli) -> None:  # type: ignore[no-untyped-def]
    expected = _expected_reason_here()
    support = cgroup.detect()
    assert not support.usable and support.reason == expected

    result = cli("sandbox", "check", "--json")
    report = json.loads(result.out)
    assert report["limits"] == {"mechanism": "rlimits", "cgroup_v2": expected}
    found = {p["name"]: p for p in report["protections"]}
    assert found["memory limit"] == {
        "name": "memory limit",
        "on": True,
        "reason": f"{DEFAULT_MEMORY} by RLIMIT_AS (cgroup v2 not used: {expected})",
    }
    assert found["process limit"]["reason"].endswith(f"by RLIMIT_NPROC (cgroup v2 not used: {expected})")
    plan = sandbox.describe(sandbox.build_spec("/tmp", "/tmp", limits=sandbox.Limits(memory=1 << 30)))
    assert (
        f"limits: memory 1073741824 (by RLIMIT_AS and RLIMIT_NPROC; cgroup v2 not used: {expected})" in plan
    )


# --- the step group's mechanics on the real unified hierarchy ----------------------------------------

_serial = itertools.count()


@pytest.fixture
def scratch_group() -> Iterator[str]:
    """A fresh group of this machine's cgroup v2 hierarchy, removed afterwards with all it holds."""
    if os.geteuid() != 0:
        pytest.skip("making a group at the top of the cgroup v2 hierarchy needs root")
    mount = cgroup.choose_mount(cgroup.cgroup2_mounts(Path("/proc/self/mountinfo").read_text()))
    if mount is None or mount.readonly:
        pytest.skip("no writable cgroup v2 hierarchy is mounted")
    path = os.path.join(mount.point, f"conary-test-{os.getpid()}-{next(_serial)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for child in [e.path for e in os.scandir(path) if e.is_dir()] + [path]:
            Path(child, "cgroup.kill").write_text("1")
            deadline = time.monotonic() + 10
            while Path(child, "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.rmdir(child)


def _relative(path: str) -> str:
    mount = cgroup.choose_mount(cgroup.cgroup2_mounts(Path("/proc/self/mountinfo").read_text()))
    assert mount is not None
    return "/" + os.path.relpath(path, mount.point)


def test_a_command_and_its_init_run_in_their_own_group_which_is_removed_after(
    scratch_group: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[cgroup.StepGroup] = []

    def step_group(limits: sandbox.Limits) -> cgroup.StepGroup:
        # The decision is forced (this hierarchy has no memory or pids controller): the group is real.
        made.append(cgroup.StepGroup.create(scratch_group, None, None))
        return made[-1]

    monkeypatch.setattr(runner, "_step_group", step_group)
    (tmp_path / "build").mkdir()
    (tmp_path / "destdir").mkdir()
    spec = sandbox.build_spec(
        tmp_path / "build", tmp_path / "destdir", limits=sandbox.Limits(memory=1 << 30, pids=100)
    )
    out = tmp_path / "out"
    script = (
        "grep ^0:: /proc/self/cgroup; grep ^0:: /proc/1/cgroup; sleep 60 & grep ^0:: /proc/$!/cgroup; "
        "grep 'address space' /proc/self/limits"
    )
    with out.open("wb") as handle:
        assert sandbox.run(spec, ["sh", "-c", script], stdout=handle, stderr=handle) == 0
    lines = out.read_text().splitlines()
    (group,) = made
    inside = f"0::{_relative(group.path)}"
    assert lines[:3] == [inside, inside, inside], lines  # the command, the init, a background child
    # In the group's place, no rlimit: memory=1<<30 would have set RLIMIT_AS.
    assert lines[3].split()[3:5] == ["unlimited", "unlimited"], lines[3]
    assert not os.path.exists(group.path)  # removed, its sleeping child killed with the sandbox


def test_removing_a_group_kills_what_is_left_in_it(scratch_group: str) -> None:
    group = cgroup.StepGroup.create(scratch_group, None, None)
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # joins the group, leaves a detached grandchild behind, and exits
        os.close(ready_r)
        group.join()
        if os.fork() == 0:
            os.setsid()
            os.write(ready_w, f"{os.getpid()}\n".encode())
            signal.pause()
        os._exit(0)
    os.close(ready_w)
    os.waitpid(child, 0)
    with os.fdopen(ready_r) as ready:
        orphan = int(ready.readline())
    assert Path(group.path, "cgroup.procs").read_text().split() == [str(orphan)]
    group.remove()
    assert not os.path.exists(group.path)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{orphan}").exists() and time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{orphan}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # killed; reaped by its new parent in its own time
            break
        time.sleep(0.01)
    else:
        assert not Path(f"/proc/{orphan}").exists()


def test_stale_step_groups_of_dead_conary_processes_are_removed(scratch_group: str) -> None:
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    stale = Path(scratch_group, f"{cgroup.STEP_PREFIX}{dead}-0")
    live = Path(scratch_group, f"{cgroup.STEP_PREFIX}{os.getpid()}-999")
    stale.mkdir()
    live.mkdir()
    cgroup.remove_stale(scratch_group)
    assert not stale.exists() and live.exists()
