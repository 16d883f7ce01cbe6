"""Where build steps run: in the hermetic sandbox (the default) or directly on the host (debugging).

Both runners take the same step environment. The hermetic one shows the source tree at /build and the
destination at /destdir, on a read-only tmpfs root with the toolchain root bound read-only, a private
/tmp, a fresh /proc and a minimal /dev, no network but loopback, and its own hostname. The host runner
uses the real work-directory paths; it exists to debug a recipe, and its packages are marked as such.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conary import sandbox
from conary.cook.environment import BUILD_DIR, DEST_DIR

HERMETIC = "hermetic"
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

    The sandbox overwrites the command line and environment its init inherits from this process, so
    a step cannot read the packager's variables or arguments through /proc/1.
    """

    mode = HERMETIC

    def __init__(
        self,
        build_host: Path,
        dest_host: Path,
        sysroots: Sequence[Path] = (),
        *,
        host_seed: bool = False,
    ) -> None:
        self.build_host = build_host
        self.dest_host = dest_host
        self.sysroots = tuple(sysroots)  # top first; none: the host seed alone
        self.host_seed = host_seed

    @property
    def build_dir(self) -> str:
        return BUILD_DIR

    @property
    def dest_dir(self) -> str:
        return DEST_DIR

    def spec(self, env: Mapping[str, str], cwd: str) -> sandbox.SandboxSpec:
        return sandbox.build_spec(
            self.build_host,
            self.dest_host,
            sysroot=self.sysroots,
            host_seed=self.host_seed,
            env=dict(env),
            cwd=cwd,
        )

    def describe(self) -> list[str]:
        return list(sandbox.describe(self.spec({}, BUILD_DIR)))

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, out_fd: int) -> int:
        return sandbox.run(
            self.spec(env, cwd), list(argv), stdin=subprocess.DEVNULL, stdout=out_fd, stderr=out_fd
        )

    def close(self) -> None:
        pass


def shell_argv(script: str) -> list[str]:
    """How every step is run: POSIX sh with -e, so the first failing command fails the step."""
    return ["/bin/sh", "-e", "-c", script]


def ensure_dir(path: str | os.PathLike[str]) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
