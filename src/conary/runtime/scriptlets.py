"""Package scriptlets (pre/post install/remove), and the runner triggers share: a command in a root.

Sandbox modes (``--sandbox``):

- ``always``: run in the sandbox (``conary.sandbox``) chrooted into the target root: fresh mount,
  PID, IPC, UTS and network namespaces (loopback only), fresh /proc, minimal /dev, private /tmp,
  a cleared environment. Failing to set it up fails the operation.
- ``auto`` (default): the same, unless this machine cannot create the namespaces; then it falls
  back to ``never`` with a warning.
- ``never``: a plain ``chroot`` into the target root (run directly when the root is ``/``), with
  the host's network.

A scriptlet is run as ``/bin/sh -c SCRIPT`` (or the interpreter of its ``#!`` line with ``-c``).
Its environment holds PATH, HOME, LC_ALL=C, CONARY_PACKAGE and CONARY_SCRIPTLET.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from conary.errors import ConaryError, InputError
from conary.sandbox import SandboxError, SandboxSpec, SandboxTimeout, base_ops, check_support, run

SANDBOX_MODES = ("auto", "always", "never")  # the one list; "auto" (the default) first
SCRIPTLET_KINDS = ("pre_install", "post_install", "pre_remove", "post_remove")
DEFAULT_TIMEOUT = 3600.0
TAIL_LINES = 10
ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ScriptletError(ConaryError):
    """A scriptlet or trigger command failed or could not be started."""


def check_mode(sandbox_mode: str) -> str:
    if sandbox_mode not in SANDBOX_MODES:
        raise InputError(
            f"invalid sandbox mode {sandbox_mode!r}", hint=f"use one of {', '.join(SANDBOX_MODES)}"
        )
    return sandbox_mode


def _sandbox_unavailable_reason() -> str | None:
    """Why the sandbox cannot run here, or None when it can."""
    try:
        check_support()
    except SandboxError as err:
        return err.render()
    return None


def executable_in_root(root: Path, relative: str) -> bool:
    """An executable at RELATIVE as the root sees it: symlinks resolved inside ROOT, not the host."""
    current = root
    parts = list(Path(relative).parts)
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return False
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            parts = list(Path(target.lstrip("/")).parts) + parts
            continue
        current = candidate
        if not current.exists():
            return False
    return current.is_file() and os.access(current, os.X_OK)


def _tail(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").rstrip("\n").splitlines()
    return " | ".join(line.rstrip() for line in lines[-TAIL_LINES:])


def run_in_root(
    root: Path,
    argv: Sequence[str],
    sandbox_mode: str,
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> str:
    """Run ARGV inside ROOT as SANDBOX_MODE says; return its output, raise ScriptletError on failure.

    ARGV[0] is a path inside the root. WHAT names the command in messages ("trigger ldconfig").
    """
    check_mode(sandbox_mode)
    root = Path(root).resolve()
    is_host = root == Path("/")
    if not executable_in_root(root, argv[0].lstrip("/")):
        raise ScriptletError(
            f"{what}: {argv[0]} is missing or not executable in the root",
            where=str(root),
            hint="the root must contain it (scriptlets need a shell such as busybox as /bin/sh)",
        )
    full_env = {"PATH": ENV_PATH, "HOME": "/root" if is_host else "/tmp", "LC_ALL": "C", **(env or {})}
    use_sandbox = sandbox_mode == "always"
    if sandbox_mode == "auto":
        reason = _sandbox_unavailable_reason()
        use_sandbox = reason is None
        if reason is not None:
            print(f"conary: warning: {what}: running without a sandbox: {reason}", file=sys.stderr)
    with tempfile.TemporaryFile() as log:
        if use_sandbox:
            code = _run_sandboxed(root, argv, full_env, log, timeout, what)
        else:
            code = _run_chrooted(root, argv, full_env, log, timeout, what, is_host)
        log.seek(0)
        output = log.read()
    if code != 0:
        tail = _tail(output)
        raise ScriptletError(
            f"{what} failed with exit code {code}" + (f"; last output: {tail}" if tail else " (no output)"),
            where=str(root),
            hint=f"command: {shlex.join(argv)[:200]}",
        )
    return output.decode("utf-8", "replace")


def _run_sandboxed(
    root: Path, argv: Sequence[str], env: Mapping[str, str], log: object, timeout: float | None, what: str
) -> int:
    spec = SandboxSpec(operations=base_ops(), chroot_root=str(root), env=env, network=False)
    try:
        return run(spec, list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=timeout)
    except SandboxTimeout:
        raise ScriptletError(f"{what} timed out after {timeout:.0f} s and was killed", where=str(root))
    except SandboxError as err:
        raise ScriptletError(
            f"{what}: cannot run in the sandbox: {err.what}",
            where=err.where or str(root),
            hint=err.hint or "use --sandbox=never to run without it",
        )


def _run_chrooted(
    root: Path,
    argv: Sequence[str],
    env: Mapping[str, str],
    log: object,
    timeout: float | None,
    what: str,
    is_host: bool,
) -> int:
    def enter_root() -> None:
        os.chroot(root)
        os.chdir("/")

    if not is_host and os.geteuid() != 0:
        raise ScriptletError(
            f"{what}: chroot into the root needs root privileges", where=str(root), hint="run as root"
        )
    try:
        completed = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd="/",
            preexec_fn=None if is_host else enter_root,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ScriptletError(f"{what} timed out after {timeout:.0f} s and was killed", where=str(root))
    except OSError as err:
        raise ScriptletError(f"{what}: cannot run {argv[0]}: {err.strerror}", where=str(root))
    return completed.returncode if completed.returncode >= 0 else 128 - completed.returncode


def scriptlet_argv(script: str, name: str) -> list[str]:
    """How a scriptlet is started: by its #! interpreter if it has one, else /bin/sh."""
    first = script.split("\n", 1)[0]
    if first.startswith("#!"):
        words = first[2:].split(None, 1)
        if not words:
            raise InputError(f"{name}: empty #! line")
        return [words[0], *words[1:], "-c", script, name]
    return ["/bin/sh", "-c", script, name]


def run_scriptlet(root: Path, package: str, kind: str, script: str, sandbox_mode: str) -> None:
    """Run PACKAGE's KIND scriptlet in ROOT. Raises ScriptletError naming the exit code and output."""
    if kind not in SCRIPTLET_KINDS:
        raise InputError(f"unknown scriptlet kind {kind!r}", hint=f"use one of {', '.join(SCRIPTLET_KINDS)}")
    if not script.strip():
        return
    name = f"{package}-{kind}"
    run_in_root(
        Path(root),
        scriptlet_argv(script, name),
        sandbox_mode,
        what=f"{kind} scriptlet of {package}",
        env={"CONARY_PACKAGE": package, "CONARY_SCRIPTLET": kind},
    )
