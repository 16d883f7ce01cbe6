"""Shared by the sandbox tests: a probe script run inside sandboxes, and running a sandbox as `nobody`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyseccomp

SRC = Path(__file__).resolve().parent.parent / "src" / "conary"
NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

# Run with sh inside a sandbox; prints one key=value line per observation. $PORT is a TCP port the test
# listens on at the host's 127.0.0.1.
PROBE = r"""
echo "pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
echo "pid1=$(cat /proc/1/comm)"
echo "hostname=$(uname -n)"
if bash -c "echo probe > /dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then echo tcp=open; else echo tcp=closed; fi
if getent hosts deb.debian.org >/dev/null 2>&1; then echo dns=resolved; else echo dns=failed; fi
echo "localhost=$(getent hosts localhost | cut -d' ' -f1)"
for p in /usr/probe /etc/probe /probe /dev/probe /build/probe /destdir/probe /tmp/probe; do
    if touch "$p" 2>/dev/null; then echo "write:$p=ok"; else echo "write:$p=denied"; fi
done
for p in /root /home /usr/bin /etc/alternatives; do
    if [ -e "$p" ]; then echo "visible:$p=yes"; else echo "visible:$p=no"; fi
done
echo "secret=${CONARY_PROBE_SECRET-unset}"
echo "given=${CONARY_PROBE_GIVEN-unset}"
echo "uid=$(id -u)"
"""


def parse_probe(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@contextmanager
def nobody_workspace() -> Iterator[Path]:
    """A directory nobody can use: a copy of the sandbox package (and its two leaf modules) plus
    build/ and destdir/ owned by nobody. pytest's tmp_path lives under a 0700 directory, so not that."""
    root = Path(tempfile.mkdtemp(prefix="conary-sandbox-nobody-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        lib = root / "lib" / "conary"
        shutil.copytree(SRC / "sandbox", lib / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("__init__.py", "errors.py", "fsutil.py"):
            shutil.copy(SRC / name, lib / name)
        shutil.copy(pyseccomp.__file__, root / "lib" / "pyseccomp.py")  # the sandbox's one dependency
        for name in ("build", "destdir"):
            (root / name).mkdir()
            os.chown(root / name, NOBODY, NOBODY)
        (root / "run.py").write_text(_RUNNER)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Executed as nobody: builds the standard build sandbox over the workspace and runs argv in it.
_RUNNER = """
import dataclasses, json, sys
from conary.sandbox import SandboxError, build_spec, minimal_env, run
request = json.loads(sys.argv[1])
spec = build_spec(request["build"], request["destdir"], env=minimal_env(request["env"]),
                  cwd=request["cwd"])
if request["userns"]:
    spec = dataclasses.replace(spec, user_namespace=True)
try:
    sys.exit(run(spec, request["argv"]))
except SandboxError as err:
    print("SandboxError:", err, file=sys.stderr)
    sys.exit(99)
"""


def python_for_nobody() -> str:
    """An interpreter nobody may execute (a virtualenv under /root is not one)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            [*SETPRIV, candidate, "-c", "import sys; assert sys.version_info >= (3, 11)"], capture_output=True
        )
        if probe.returncode == 0:
            return candidate
    raise AssertionError("no Python >= 3.11 that the nobody user can execute (install python3)")


def nobody_command(
    workspace: Path,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str = "/build",
    prefix: Sequence[str] = (),
    as_nobody: bool = True,
    userns: bool = False,
    extra_env: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run *argv* in the workspace's build sandbox as nobody."""
    request = {
        "build": str(workspace / "build"),
        "destdir": str(workspace / "destdir"),
        "argv": list(argv),
        "env": env or {},
        "cwd": cwd,
        "userns": userns,
    }
    process_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(workspace / "lib")}
    process_env.update(extra_env or {})
    command = [
        *prefix,
        *(SETPRIV if as_nobody else ()),
        python_for_nobody(),
        str(workspace / "run.py"),
        json.dumps(request),
    ]
    return command, process_env


def run_as_nobody(workspace: Path, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    command, env = nobody_command(workspace, argv, **kwargs)  # type: ignore[arg-type]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
