"""Where build steps run: in the hermetic sandbox (the default) or directly on the host (debugging).

Both runners take the same step environment. The hermetic one shows the source tree at /build and the
destination at /destdir, on a read-only tmpfs root with the toolchain root bound read-only, a private
/tmp, a fresh /proc and a minimal /dev, no network but loopback, and its own hostname. The host runner
uses the real work-directory paths; it exists to debug a recipe, and its packages are marked as such.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conary.cook.environment import BUILD_DIR, DEST_DIR

HERMETIC = "hermetic"
# Where the conary package lives, so the helper imports this very copy (also from a source checkout).
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)
HOST = "host"


@dataclass(frozen=True)
class HostRunner:
    """Runs a step as a plain child process with the given environment (nothing is isolated)."""

    build_host: Path
    dest_host: Path
    mode: str = HOST

    @property
    def build_dir(self) -> str:
        return str(self.build_host)

    @property
    def dest_dir(self) -> str:
        return str(self.dest_host)

    def host_path(self, step_path: str) -> Path:
        return Path(step_path)

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, out_fd: int) -> int:
        result = subprocess.run(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out_fd,
            stderr=out_fd,
            start_new_session=True,
            check=False,
        )
        return result.returncode

    def close(self) -> None:
        pass


class SandboxRunner:
    """Runs each step in a fresh hermetic sandbox (one per step, so no process outlives its step).

    The sandbox calls are made by a helper process with a clean environment (see
    conary.cook._sandbox_helper), started on the first step and stopped by `close()`.
    """

    mode = HERMETIC

    def __init__(self, build_host: Path, dest_host: Path, sysroot: Path | None = None) -> None:
        self.build_host = build_host
        self.dest_host = dest_host
        self.sysroot = sysroot
        self._helper: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._replies: BinaryIO | None = None

    @property
    def build_dir(self) -> str:
        return BUILD_DIR

    @property
    def dest_dir(self) -> str:
        return DEST_DIR

    def spec(self, env: Mapping[str, str], cwd: str):  # type: ignore[no-untyped-def]
        from conary import sandbox

        return sandbox.build_spec(
            self.build_host, self.dest_host, sysroot=self.sysroot, env=dict(env), cwd=cwd
        )

    def describe(self) -> list[str]:
        from conary import sandbox

        return list(sandbox.describe(self.spec({}, BUILD_DIR)))

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._helper = subprocess.Popen(
                [sys.executable, "-s", "-m", "conary.cook._sandbox_helper", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                env={"PYTHONPATH": _PACKAGE_PARENT},
                cwd="/",
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self._sock = ours
        self._replies = ours.makefile("rb")

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, out_fd: int) -> int:
        from conary.sandbox import SandboxError

        if self._helper is None:
            self._start()
        assert self._sock is not None and self._replies is not None
        request = {
            "build": str(self.build_host),
            "dest": str(self.dest_host),
            "sysroot": str(self.sysroot) if self.sysroot else None,
            "env": dict(env),
            "cwd": cwd,
            "argv": list(argv),
        }
        data = json.dumps(request).encode() + b"\n"
        socket.send_fds(self._sock, [data[:1]], [out_fd])
        self._sock.sendall(data[1:])
        line = self._replies.readline()
        if not line:
            code = self._helper.wait() if self._helper else None
            self._helper = None
            raise SandboxError(f"the sandbox helper process exited unexpectedly (exit code {code})")
        reply = json.loads(line)
        if "error" in reply:
            raise SandboxError(**reply["error"])
        return int(reply["code"])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._replies is not None:
            self._replies.close()
            self._replies = None
        if self._helper is not None:
            self._helper.wait()
            self._helper = None


def shell_argv(script: str) -> list[str]:
    """How every step is run: POSIX sh with -e, so the first failing command fails the step."""
    return ["/bin/sh", "-e", "-c", script]


def ensure_dir(path: str | os.PathLike[str]) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
