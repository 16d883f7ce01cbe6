"""Run one command in a fresh set of namespaces.

Process layout:
    caller ── fork ──► outer child: unshare(), uid/gid maps ── fork ──► init (PID 1 of the new PID
    namespace): mounts, pivot_root ── fork ──► the command (exec)
The init reaps every orphan and exits with the command's code; when it exits the kernel kills whatever
is left in the namespace. The outer child only waits and forwards that code to the caller.

Every step before exec reports failure through a close-on-exec pipe as one JSON message, which the
caller raises as SandboxError; an empty pipe means the command was started.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import select
import signal
import socket
import subprocess
from collections.abc import Sequence
from typing import IO

from conary.errors import ConaryError
from conary.sandbox import cgroup, privileges, seccomp
from conary.sandbox import syscalls as sc
from conary.sandbox.errors import SandboxError, SandboxTimeout
from conary.sandbox.ops import INIT_PID_NAMESPACE_INODE, Bind, Context, Dev, Operation, sources
from conary.sandbox.privileges import Limits
from conary.sandbox.spec import MAPPED_ID_BASE, MAPPED_ID_COUNT, SandboxSpec
from conary.sandbox.support import check_support

Stream = int | IO[bytes] | IO[str] | None

# The host directory the new root is assembled on. Only this mount namespace sees it covered, and
# every bind source is pinned by an O_PATH descriptor first, so sources below it stay reachable.
_STAGING = "/tmp"
_SETUP_FAILED = 125
# What /proc/1/cmdline shows inside the sandbox instead of the caller's command line.
_INIT_NAME = b"conary-sandbox-init"
_EXEC_FAILED = 127
# Forwarded by the init to the command; everything else an init would ignore.
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# A step's group also holds the sandbox's own two processes (the outer child and the init).
_SANDBOX_PROCESSES = 2


def run(
    spec: SandboxSpec,
    argv: Sequence[str | os.PathLike[str]],
    *,
    stdin: Stream = None,
    stdout: Stream = None,
    stderr: Stream = None,
    timeout: float | None = None,
) -> int:
    """Run *argv* in the sandbox *spec* and return its exit code (128+N when killed by signal N).

    stdin/stdout/stderr: None inherits the caller's, or an fd / file object / subprocess.DEVNULL.
    The caller must drain any pipe it passes. Raises SandboxError when the sandbox cannot be set up
    or the command cannot be executed, SandboxTimeout when *timeout* seconds pass (the whole
    sandbox is killed)."""
    command = [os.fspath(arg) for arg in argv]
    if not command:
        raise SandboxError("no command given to run in the sandbox")
    seccomp.require()
    operations = spec.plan
    # Decided once, here: inside the children the same questions would get different answers.
    flags = spec.clone_flags
    mapped = spec.maps_root
    if flags & sc.CLONE_NEWUSER or mapped:
        check_support(privileged=sc.has_cap_sys_admin())
    _check_sources(spec, operations)
    if mapped:
        for op in operations:
            if isinstance(op, Bind) and not op.readonly:
                hand_over(op.source)
    streams = [_fileno(s) for s in (stdin, stdout, stderr)]
    group = _step_group(spec.limits)
    if group is not None:
        spec = dataclasses.replace(spec, limits=Limits())  # the group's limits replace the rlimits
    try:
        status = _fork_and_wait(spec, flags, mapped, operations, command, streams, group, timeout)
    finally:
        if group is not None:
            _report_and_remove(group, streams[2])
    return _exit_code(status)


def _fork_and_wait(
    spec: SandboxSpec,
    flags: int,
    mapped: bool,
    operations: Sequence[Operation],
    command: list[str],
    streams: list[int | None],
    group: cgroup.StepGroup | None,
    timeout: float | None,
) -> int:
    nested = os.stat("/proc/self/ns/pid").st_ino != INIT_PID_NAMESPACE_INODE
    uid, gid = os.geteuid(), os.getegid()
    caller = os.getpid()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:
        try:
            os.close(read_end)
            _outer(
                spec, flags, mapped, nested, operations, command, streams, write_end, uid, gid, caller, group
            )
        except BaseException as exc:
            _report(write_end, exc)
        os._exit(_SETUP_FAILED)
    os.close(write_end)
    try:
        status = _wait(pid, timeout)
        message = _read_message(read_end)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_end)
    if message:
        raise SandboxError(**json.loads(message))
    return status


def _step_group(limits: Limits) -> cgroup.StepGroup | None:
    """The command's own cgroup v2 group with its limits, when the caller has a delegated group; None
    when there are no limits to set or cgroup v2 is not usable (the rlimits apply, see cgroup.detect)."""
    if limits.memory is None and limits.pids is None:
        return None
    support = cgroup.detect()
    if not support.usable or support.parent is None:
        return None
    pids = None if limits.pids is None else limits.pids + _SANDBOX_PROCESSES
    try:
        cgroup.prepare(support)
        return cgroup.StepGroup.create(support.parent, limits.memory, pids)
    except OSError as err:
        raise SandboxError(
            f"cannot make the command's cgroup: {err.strerror}",
            where=err.filename or support.parent,
            hint=f"cgroup v2 looked usable ({support.reason}); check its delegation",
        ) from None


def _report_and_remove(group: cgroup.StepGroup, stderr: int | None) -> None:
    """Say in the command's error stream when its group's limits stopped it, then remove the group."""
    events = group.events()
    notes = []
    if events.oom_kills:
        notes.append(
            f"conary: the command ran out of memory: its cgroup's memory.max was reached "
            f"and the kernel killed it ({events.oom_kills} OOM kill(s))\n"
        )
    if events.fork_refusals:
        notes.append(
            f"conary: the command reached its cgroup's pids.max: {events.fork_refusals} fork(s) refused\n"
        )
    target = 2 if stderr is None else stderr
    if notes and target != subprocess.DEVNULL:
        try:
            os.write(target, "".join(notes).encode())
        except OSError:
            pass
    try:
        group.remove()
    except OSError as err:
        raise SandboxError(f"cannot remove the command's cgroup: {err.strerror}", where=group.path) from None


def hand_over(path: str) -> None:
    """Give a read-write bind's tree to the sandbox's mapped root (host uid MAPPED_ID_BASE), so uid 0
    inside owns it as a build expects. Host root has no power in the command's user namespace.

    Done once: a tree whose top already belongs to the mapped root is taken as handed over."""
    top = os.lstat(path)
    if top.st_uid == MAPPED_ID_BASE and top.st_gid == MAPPED_ID_BASE:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        for parent, dirs, files in os.walk(path, onerror=_raise_walk_error):
            for name in (*dirs, *files):
                os.lchown(os.path.join(parent, name), MAPPED_ID_BASE, MAPPED_ID_BASE)
    os.lchown(path, MAPPED_ID_BASE, MAPPED_ID_BASE)


def _raise_walk_error(err: OSError) -> None:
    raise SandboxError(f"cannot hand the tree over to the sandbox: {err.strerror}", where=err.filename)


def _read_message(fd: int) -> bytes:
    # Every writer is dead by now, so whatever was sent is in the pipe. Do not wait for EOF: a process
    # forked by another thread in the instant the write end existed may still hold a copy.
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


def _check_sources(spec: SandboxSpec, operations: Sequence[Operation]) -> None:
    for op in operations:
        for source in sources(op):
            if not os.path.exists(source):
                raise SandboxError(f"{type(op).__name__.lower()} source does not exist", where=source)
    if spec.chroot_root is not None and not os.path.isdir(spec.chroot_root):
        raise SandboxError("chroot root is not a directory", where=spec.chroot_root)


def _fileno(stream: Stream) -> int | None:
    if stream is None or isinstance(stream, int):
        return stream
    stream.flush()
    return stream.fileno()


def _wait(pid: int, timeout: float | None) -> int:
    if timeout is not None:
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not ready:
            _kill(pid)
            raise SandboxTimeout(f"command did not finish within {timeout:g} seconds and was killed")
    return os.waitpid(pid, 0)[1]


def _kill(pid: int) -> None:
    # The init has PR_SET_PDEATHSIG=SIGKILL and is PID 1: killing the outer child tears down the lot.
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _report(fd: int, exc: BaseException) -> None:
    if isinstance(exc, ConaryError):
        payload = {"what": exc.what, "where": exc.where, "hint": exc.hint}
    elif isinstance(exc, OSError):
        payload = {"what": exc.strerror or str(exc), "where": exc.filename, "hint": None}
    else:
        payload = {"what": f"{type(exc).__name__}: {exc}", "where": "sandbox", "hint": None}
    try:
        os.write(fd, json.dumps(payload).encode())
    except OSError:
        pass


def _close_all_but(keep: int) -> None:
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


# --- outer child -------------------------------------------------------------------------------------


def _outer(
    spec: SandboxSpec,
    flags: int,
    mapped: bool,
    nested: bool,
    operations: Sequence[Operation],
    command: list[str],
    streams: list[int | None],
    errfd: int,
    uid: int,
    gid: int,
    caller: int,
    group: cgroup.StepGroup | None,
) -> None:
    # Dies with the caller, even by SIGKILL; the init below dies with this process, and every process
    # of the sandbox with the init (it is PID 1 of their namespace).
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != caller:  # the caller died before the death signal was armed
        os._exit(_SETUP_FAILED)
    if group is not None:
        # Joined before the init is forked, so the init and every process of the command are born in
        # the group; done with the caller's credentials, before any namespace changes them.
        group.join()
        os.close(group.procs_fd)
    # A terminal's Ctrl-C should kill the sandbox, not raise KeyboardInterrupt in a copy of the caller.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # Duplicate first, then install: stdout=2 with stderr=1 must swap, not collapse onto one stream.
    sources = [
        None if fd is None else os.open(os.devnull, os.O_RDWR) if fd == subprocess.DEVNULL else os.dup(fd)
        for fd in streams
    ]
    for target, fd in enumerate(sources):
        if fd is not None:
            os.dup2(fd, target)
            os.close(fd)
    # Nothing else of the caller's (its files, other sandboxes' pipes) goes any further.
    _close_all_but(errfd)
    try:
        sc.unshare(flags)
    except OSError as err:
        raise _unshare_error(err, flags) from None
    if flags & sc.CLONE_NEWUSER:
        _write_id_maps(spec, uid, gid)
    # The init cannot see its parent across the PID namespace border; a pidfd can.
    parent = os.pidfd_open(os.getpid())
    pid = os.fork()
    if pid == 0:
        try:
            _init(spec, flags, mapped, nested, operations, command, errfd, parent)
        except BaseException as exc:
            _report(errfd, exc)
        os._exit(_SETUP_FAILED)
    os.close(errfd)
    os.close(parent)
    os._exit(_exit_code(os.waitpid(pid, 0)[1]))


def _unshare_error(err: OSError, flags: int) -> SandboxError:
    what = f"cannot create namespaces: {err.strerror}"
    if flags & sc.CLONE_NEWUSER:
        hint = (
            "user namespaces look allowed by sysctl, so a seccomp filter probably blocks "
            "unshare(CLONE_NEWUSER): a conary sandbox refuses sandboxes inside it, a container runtime "
            "may too; run it outside, or in a container that permits it"
        )
        if err.errno == errno.ENOSPC:
            hint = (
                "the user namespace limit is reached; raise it with sysctl -w user.max_user_namespaces=15000"
            )
    else:
        hint = "creating namespaces needs CAP_SYS_ADMIN; in a container, allow unshare (e.g. --privileged)"
    return SandboxError(what, where="unshare", hint=hint)


def _write_id_maps(spec: SandboxSpec, uid: int, gid: int) -> None:
    # An unprivileged process may map exactly its own ids, and only after giving up setgroups().
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{spec.uid} {uid} 1\n"),
        ("gid_map", f"{spec.gid} {gid} 1\n"),
    ):
        path = f"/proc/self/{name}"
        if name == "setgroups" and not os.path.exists(path):
            continue
        sc.write_control(path, text)


# --- init: PID 1 of the sandbox ----------------------------------------------------------------------


def _init(
    spec: SandboxSpec,
    flags: int,
    mapped: bool,
    nested: bool,
    operations: Sequence[Operation],
    command: list[str],
    errfd: int,
    parent: int,
) -> None:
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    _scrub_inherited_environment()
    if select.select([parent], [], [], 0)[0]:  # the parent died before the death signal was armed
        os._exit(_SETUP_FAILED)
    os.close(parent)
    # A new session detaches from the caller's terminal (no TIOCSTI into the host's input).
    os.setsid()
    _build_root(spec, flags, nested, operations)
    # The command's user namespace gets its id maps from here: a process inside a new user namespace
    # may not map a range of ids, only a privileged one outside it may (as newuidmap does).
    unshared_r, unshared_w = os.pipe2(os.O_CLOEXEC) if mapped else (-1, -1)
    mapped_r, mapped_w = os.pipe2(os.O_CLOEXEC) if mapped else (-1, -1)
    child = os.fork()
    if child == 0:
        try:
            if mapped:
                os.close(unshared_r)
                os.close(mapped_w)
                _enter_mapped_user_namespace(unshared_w, mapped_r)
            _exec(spec, bool(flags & sc.CLONE_NEWUSER), mapped, command, errfd)
        except BaseException as exc:
            _report(errfd, exc)
        os._exit(_EXEC_FAILED)
    if mapped:
        os.close(unshared_w)
        os.close(mapped_r)
        if os.read(unshared_r, 1) == b"u":
            _write_range_maps(child)
            os.write(mapped_w, b"m")
        os.close(unshared_r)
        os.close(mapped_w)
    os.close(errfd)
    for sig in _FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os._exit(_exit_code(status))


def _write_range_maps(pid: int) -> None:
    for name in ("uid_map", "gid_map"):
        sc.write_control(f"/proc/{pid}/{name}", f"0 {MAPPED_ID_BASE} {MAPPED_ID_COUNT}\n")


def _enter_mapped_user_namespace(unshared: int, mapped: int) -> None:
    """Move this process into a new user namespace whose root is MAPPED_ID_BASE on the host. The
    mount, PID, UTS, IPC and network namespaces stay owned by the host's: nothing in here may change
    them, whatever its capabilities."""
    try:
        sc.unshare(sc.CLONE_NEWUSER)
    except OSError as err:
        raise SandboxError(
            f"cannot give the build's root a user namespace: {err.strerror}",
            where="unshare(CLONE_NEWUSER)",
            hint="the sandbox never runs a build as host root; allow user namespaces "
            "(sysctl -w user.max_user_namespaces=15000)",
        ) from None
    os.write(unshared, b"u")
    os.close(unshared)
    if os.read(mapped, 1) != b"m":
        os._exit(_SETUP_FAILED)  # the init could not write the maps and has reported why
    os.close(mapped)
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _scrub_inherited_environment() -> None:
    """Overwrite the command line and environment blocks this process inherited from the caller.

    The init is a fork of the caller, so /proc/1/cmdline and /proc/1/environ inside the sandbox would
    show the caller's command line and original environment (tokens, secrets) to every step.
    Python's sys.argv and os.environ are copies, so rewriting the kernel-visible blocks through
    /proc/self/mem changes nothing else. The command line becomes a fixed name.
    """
    with open("/proc/self/stat", "rb") as stat:
        # Fields after the parenthesised command name: arg_start, arg_end, env_start and env_end are
        # fields 48 to 51 of proc(5), so indexes 45 to 48 here.
        fields = stat.read().rsplit(b")", 1)[1].split()
    arg_start, arg_end, env_start, env_end = (int(f) for f in fields[45:49])
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        for start, end, text in ((arg_start, arg_end, _INIT_NAME), (env_start, env_end, b"")):
            if end > start:
                mem.seek(start)
                mem.write(text[: end - start - 1].ljust(end - start, b"\0"))


def _build_root(spec: SandboxSpec, flags: int, nested: bool, operations: Sequence[Operation]) -> None:
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    # Pinned now (inside the new mount namespace, where the mounts they point into live), used below.
    pins: dict[str, int] = {}
    for op in operations:
        for source in sources(op):
            if source not in pins:
                pins[source] = os.open(source, os.O_PATH | os.O_CLOEXEC)
    newroot = _STAGING
    if spec.chroot_root is None:
        sc.mount("tmpfs", newroot, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755")
    else:
        root_fd = os.open(spec.chroot_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        sc.mount(f"/proc/self/fd/{root_fd}", newroot, None, sc.MS_BIND | sc.MS_REC)
        os.close(root_fd)
        # Nothing setuid and no device node of the target root is usable from inside.
        sc.remount_bind(newroot, sc.MS_NOSUID | sc.MS_NODEV)
    context = Context(pins=pins, user_namespace=bool(flags & sc.CLONE_NEWUSER), nested=nested)
    for op in operations:
        try:
            op.execute(newroot, context)
        except OSError as err:
            where = err.filename if isinstance(err.filename, str) else None
            if where and where.startswith(newroot + "/"):
                where = where[len(newroot) :]
            raise SandboxError(f"{op.describe()}: {err.strerror}", where=where) from None
    for op in operations:
        if isinstance(op, Dev):
            op.seal(newroot)
    if spec.chroot_root is None:
        sc.remount_readonly(newroot)
    for fd in pins.values():
        os.close(fd)
    socket.sethostname(spec.hostname)
    if not spec.network:
        sc.loopback_up()
    _pivot(newroot)


def _pivot(newroot: str) -> None:
    os.chdir(newroot)
    try:
        # Stacks the old root on top of the new one at "/", so no put_old directory is needed.
        sc.pivot_root(".", ".")
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        # The host root is not a mount point (an initramfs rootfs): move the new root over it instead.
        sc.mount(".", "/", None, sc.MS_MOVE)
        os.chroot(".")
    else:
        sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


# --- the command -------------------------------------------------------------------------------------


def _exec(spec: SandboxSpec, userns: bool, mapped: bool, command: list[str], errfd: int) -> None:
    # Python ignores these for itself; exec keeps ignored signals ignored, which breaks `yes | head`.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, *_FORWARDED):
        signal.signal(sig, signal.SIG_DFL)
    try:
        privileges.drop_capabilities()
    except OSError as err:
        raise SandboxError(f"cannot drop capabilities: {err.strerror}", where="sandbox") from None
    if (mapped or not userns) and (spec.uid or spec.gid):
        os.setgroups([])
        os.setresgid(spec.gid, spec.gid, spec.gid)
        os.setresuid(spec.uid, spec.uid, spec.uid)
    os.umask(0o022)
    try:
        os.chdir(spec.cwd)
    except OSError as err:
        raise SandboxError(f"cannot enter the working directory: {err.strerror}", where=spec.cwd) from None
    _close_all_but(errfd)
    try:
        privileges.no_new_privileges()
        privileges.apply_limits(spec.limits)
        seccomp.install()
    except OSError as err:
        raise SandboxError(f"cannot restrict the command: {err.strerror or err}", where="sandbox") from None
    try:
        os.execvpe(command[0], command, dict(spec.env))
    except OSError as err:
        hint = None
        if isinstance(err, FileNotFoundError):
            hint = "the sandbox shows only what its operations bind; check the toolchain root and PATH"
        raise SandboxError(
            f"cannot execute {command[0]!r}: {err.strerror}", where="sandbox", hint=hint
        ) from None
