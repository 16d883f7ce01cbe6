"""cgroup v2 limits of a sandboxed command, where a cgroup v2 group is delegated to the caller.

Three parts, kept apart so the decision can be read and tested without a cgroup filesystem:
- parse: pure functions over the text of /proc/self/mountinfo, /proc/self/cgroup and the
  cgroup.controllers / cgroup.subtree_control / cgroup.procs files;
- assess: a pure function from those facts to `Support` (usable, or exactly why not);
- act: `detect()` gathers the facts of this process, `StepGroup.create()` makes one step's group.

The layout follows cgroup v2's "no internal processes" rule (a group that holds processes cannot hand
controllers to child groups, the root excepted), as systemd's delegation model, crun and podman do:

    <delegated group D>            memory and pids enabled in its cgroup.subtree_control
    ├── conary.leaf                the caller itself, moved here once
    ├── conary.step-<pid>-<n>      one per sandboxed command: memory.max, memory.swap.max, pids.max
    └── ...

The caller only ever moves itself, and only when it is alone in D: it never moves a process it did
not start, so a shell or a service sharing D keeps its place (and conary uses rlimits instead).
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import time
from dataclasses import dataclass

from conary.sandbox.syscalls import write_control

CONTROLLERS = ("memory", "pids")
# The caller's own leaf below the delegated group, and the prefix of each command's group.
LEAF = "conary.leaf"
STEP_PREFIX = "conary.step-"
# Mount points looked at first: a pure cgroup v2 system, then a hybrid one (systemd's "unified").
_PREFERRED_MOUNTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
# systemd marks the groups of units with Delegate=yes (trusted.* readable by root, user.* by anyone).
_DELEGATION_MARKS = ("trusted.delegate", "user.delegate")
DELEGATE_HINT = "systemd-run --scope -p Delegate=yes conary ... (as a user: systemd-run --user --scope ...)"


# --- parse ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A cgroup2 mount: where it is mounted, which group of the hierarchy is its root, and whether
    it is mounted read-only."""

    point: str
    root: str
    readonly: bool


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mounts(mountinfo: str) -> list[Mount]:
    """The cgroup2 mounts listed in the text of /proc/self/mountinfo, in its order."""
    found = []
    for line in mountinfo.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 6 or not tail or tail[0] != "cgroup2":
            continue
        options = set(fields[5].split(","))
        found.append(Mount(point=_unescape(fields[4]), root=_unescape(fields[3]), readonly="ro" in options))
    return found


def choose_mount(mounts: list[Mount]) -> Mount | None:
    """/sys/fs/cgroup (pure v2), else /sys/fs/cgroup/unified (hybrid), else the first cgroup2 mount."""
    for point in _PREFERRED_MOUNTS:
        for mount in mounts:
            if mount.point == point:
                return mount
    return mounts[0] if mounts else None


def own_cgroup(proc_cgroup: str) -> str | None:
    """The cgroup v2 path in the text of /proc/self/cgroup (its `0::PATH` line), or None."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            path = line[3:].strip()
            return path.removesuffix(" (deleted)") or None
    return None


def group_directory(mount: Mount, path: str) -> str | None:
    """Where the group *path* is in the file system under *mount*, or None when the mount does not
    show it (a mount of another part of the hierarchy, as in a container without a cgroup namespace)."""
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    rest = path[len(root) :].strip("/")
    return os.path.join(mount.point, rest) if rest else mount.point


def names(text: str) -> frozenset[str]:
    """The names in a cgroup.controllers or cgroup.subtree_control file."""
    return frozenset(text.split())


def pids(text: str) -> frozenset[int]:
    """The process ids in a cgroup.procs file."""
    return frozenset(int(word) for word in text.split())


# --- assess --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the kernel says about this process and its cgroup v2 group (None: could not be read)."""

    mountinfo: str
    proc_cgroup: str
    pid: int
    euid: int
    # Read from the group that would hold the step groups (see `parent_of`); None when not read.
    controllers: str | None = None
    subtree_control: str | None = None
    procs: str | None = None
    writable: bool = False
    is_root: bool = False  # the hierarchy's root group (it has no cgroup.type), exempt from the rule
    delegated: bool = False  # systemd's delegation mark is set on it
    reading_failed: str | None = None  # why a file of the group could not be read


@dataclass(frozen=True)
class Support:
    """Whether the step groups can be made, where, and otherwise exactly why not."""

    usable: bool
    reason: str
    parent: str | None = None  # the group under which each command gets its own
    leaf: str | None = None  # the caller moves itself here first (None: already there, or not needed)


def parent_of(directory: str) -> str:
    """The group that holds the step groups: the caller's own, or the parent of its conary leaf."""
    return os.path.dirname(directory) if os.path.basename(directory) == LEAF else directory


def locate(facts: Facts) -> tuple[str | None, str]:
    """The directory of this process's cgroup v2 group, or None and why it is not found."""
    mount = choose_mount(cgroup2_mounts(facts.mountinfo))
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted (/proc/self/mountinfo lists no cgroup2 mount)"
    if mount.readonly:
        return None, f"cgroup v2 at {mount.point} is mounted read-only"
    path = own_cgroup(facts.proc_cgroup)
    if path is None:
        return None, "this process is in no cgroup v2 group (/proc/self/cgroup has no 0:: line)"
    directory = group_directory(mount, path)
    if directory is None:
        return None, (
            f"this process's cgroup {path} is not under the cgroup v2 mount at {mount.point} "
            f"(which shows {mount.root})"
        )
    return directory, ""


def assess(facts: Facts) -> Support:
    """Can each sandboxed command get a group of its own with the memory and pids controllers?"""
    if facts.reading_failed is not None:
        return Support(False, facts.reading_failed)
    directory, why = locate(facts)
    if directory is None:
        return Support(False, why)
    parent = parent_of(directory)
    placed = parent != directory
    if facts.controllers is None:
        return Support(False, f"cannot read {parent}/cgroup.controllers")
    offered = names(facts.controllers)
    missing = [c for c in CONTROLLERS if c not in offered]
    if missing:
        listed = " ".join(sorted(offered)) or "nothing"
        what = " and no ".join(missing)
        return Support(
            False, f"cgroup v2 at {parent} has no {what} controller (its cgroup.controllers lists: {listed})"
        )
    if not facts.writable:
        return Support(
            False,
            f"cgroup v2 group {parent} is not writable by uid {facts.euid} (it is not delegated to it; "
            f"run {DELEGATE_HINT})",
        )
    if facts.euid == 0 and not facts.is_root and not facts.delegated:
        # Root may write every group, so writable proves nothing: only a delegated one is its to divide.
        return Support(
            False,
            f"cgroup v2 group {parent} is not delegated (no trusted.delegate or user.delegate mark), so "
            f"its manager owns it; run {DELEGATE_HINT}",
        )
    enabled = set(CONTROLLERS) <= names(facts.subtree_control or "")
    if facts.is_root or placed or enabled:
        return Support(True, _usable_reason(parent), parent=parent)
    others = sorted(pids(facts.procs or "") - {facts.pid})
    if others:
        return Support(
            False,
            f"cgroup v2 group {parent} holds other processes than this one ({len(others)}: "
            f"{' '.join(map(str, others[:5]))}{' ...' if len(others) > 5 else ''}), and a group with "
            f"processes cannot hand controllers to child groups; run conary alone in a delegated "
            f"scope: {DELEGATE_HINT}",
        )
    return Support(True, _usable_reason(parent), parent=parent, leaf=os.path.join(parent, LEAF))


def _usable_reason(parent: str) -> str:
    return f"cgroup v2 group {parent} is delegated to this process and offers memory and pids"


# --- act -----------------------------------------------------------------------------------------------


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _marked(path: str) -> bool:
    for name in _DELEGATION_MARKS:
        try:
            if os.getxattr(path, name).strip() == b"1":
                return True
        except OSError:
            continue
    return False


def gather(proc: str = "/proc") -> Facts:
    """Read the facts of this process from the kernel."""
    try:
        mountinfo = _read(f"{proc}/self/mountinfo")
        proc_cgroup = _read(f"{proc}/self/cgroup")
    except OSError as err:
        return Facts(
            "", "", os.getpid(), os.geteuid(), reading_failed=f"cannot read {err.filename}: {err.strerror}"
        )
    facts = Facts(mountinfo, proc_cgroup, os.getpid(), os.geteuid())
    directory, _ = locate(facts)
    if directory is None:
        return facts
    parent = parent_of(directory)
    try:
        controllers = _read(f"{parent}/cgroup.controllers")
        subtree = _read(f"{parent}/cgroup.subtree_control")
        procs = _read(f"{parent}/cgroup.procs")
    except OSError as err:
        return Facts(
            mountinfo,
            proc_cgroup,
            facts.pid,
            facts.euid,
            reading_failed=f"cannot read {err.filename}: {err.strerror}",
        )
    writable = all(
        os.access(path, os.W_OK)
        for path in (parent, f"{parent}/cgroup.procs", f"{parent}/cgroup.subtree_control")
    )
    return Facts(
        mountinfo,
        proc_cgroup,
        facts.pid,
        facts.euid,
        controllers=controllers,
        subtree_control=subtree,
        procs=procs,
        writable=writable,
        is_root=not os.path.exists(f"{parent}/cgroup.type"),
        delegated=_marked(parent),
    )


def detect(proc: str = "/proc") -> Support:
    """Whether this process can give its sandboxed commands cgroup v2 limits, and why (not)."""
    return assess(gather(proc))


def prepare(support: Support) -> None:
    """Move the caller into its leaf (once), enable memory and pids for the parent's children, and
    remove the step groups of conary processes that died without removing theirs."""
    assert support.usable and support.parent is not None
    parent = support.parent
    if support.leaf is not None:
        os.makedirs(support.leaf, exist_ok=True)
        write_control(f"{support.leaf}/cgroup.procs", str(os.getpid()))
    enabled = names(_read(f"{parent}/cgroup.subtree_control"))
    wanted = [c for c in CONTROLLERS if c not in enabled]
    if wanted:
        write_control(f"{parent}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    remove_stale(parent)


def remove_stale(parent: str) -> None:
    """Remove the empty step groups under *parent* whose conary process is gone (killed before it
    could remove them); a group that still holds processes is left for a later run."""
    for name in os.listdir(parent):
        owner = name.removeprefix(STEP_PREFIX).split("-")[0]
        if name.startswith(STEP_PREFIX) and owner.isdigit() and not _alive(int(owner)):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass  # still populated: its processes are dying; a later run removes it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_counter = itertools.count()


@dataclass(frozen=True)
class Events:
    """What the kernel counted against a step group's limits."""

    oom_kills: int
    fork_refusals: int


class StepGroup:
    """One sandboxed command's cgroup: made before its outer process forks the init, joined by that
    process (so the init and every process of the command start inside it), removed afterwards."""

    def __init__(self, path: str, procs_fd: int) -> None:
        self.path = path
        self.procs_fd = procs_fd

    @classmethod
    def create(cls, parent: str, memory: int | None, pids_max: int | None) -> StepGroup:
        """A new group below *parent* (which `prepare` has readied) with these limits."""
        path = os.path.join(parent, f"{STEP_PREFIX}{os.getpid()}-{next(_counter)}")
        os.mkdir(path, 0o755)
        try:
            if memory is not None:
                write_control(f"{path}/memory.max", str(memory))
                if os.path.exists(f"{path}/memory.swap.max"):  # absent without swap accounting
                    write_control(f"{path}/memory.swap.max", "0")
                if os.path.exists(f"{path}/memory.oom.group"):
                    # An out-of-memory kill takes the whole command, not just its largest process.
                    write_control(f"{path}/memory.oom.group", "1")
            if pids_max is not None:
                write_control(f"{path}/pids.max", str(pids_max))
            fd = os.open(f"{path}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except BaseException:
            os.rmdir(path)
            raise
        return cls(path, fd)

    def join(self) -> None:
        """Move the calling process into the group (done by the sandbox's outer process)."""
        os.write(self.procs_fd, str(os.getpid()).encode())

    def events(self) -> Events:
        counts = {}
        for name in ("memory.events", "pids.events"):
            try:
                for line in _read(f"{self.path}/{name}").splitlines():
                    key, _, value = line.partition(" ")
                    counts[f"{name}:{key}"] = int(value)
            except (OSError, ValueError):
                continue
        return Events(counts.get("memory.events:oom_kill", 0), counts.get("pids.events:max", 0))

    def remove(self, patience: float = 10.0) -> None:
        """Kill whatever is left in the group and remove it. Raises OSError when it stays busy."""
        os.close(self.procs_fd)
        deadline = time.monotonic() + patience
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
            self._kill_all()
            time.sleep(0.01)

    def _kill_all(self) -> None:
        if os.path.exists(f"{self.path}/cgroup.kill"):  # Linux 5.14 and later: the whole group at once
            try:
                write_control(f"{self.path}/cgroup.kill", "1")
                return
            except OSError:
                pass
        try:
            for pid in pids(_read(f"{self.path}/cgroup.procs")):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        except OSError:
            pass
