"""Where build steps run: in the hermetic sandbox (the default) or directly on the host (debugging).

Both runners take the same step environment. The hermetic one shows the source tree at /build and the
destination at /destdir, on a read-only tmpfs root with the toolchain root bound read-only, a private
/tmp, a fresh /proc and a minimal /dev, no network but loopback, and its own hostname. The host runner
uses the real work-directory paths; it exists to debug a recipe, and its packages are marked as such.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conary import sandbox
from conary.cook.environment import BUILD_DIR, DEST_DIR

HERMETIC = "hermetic"
HOST = "host"
# How long a step may run when neither the recipe (build.timeout) nor the cook (--step-timeout) says.
DEFAULT_STEP_TIMEOUT = 6 * 3600
# A step's other limits (docs/sandbox.md): address space of each of its processes (RLIMIT_AS), and its
# processes and threads (RLIMIT_NPROC, counted in the step's own user namespace).
DEFAULT_MEMORY = 16 << 30
DEFAULT_PIDS = 4096


class StepTimedOut(Exception):
    """A step ran past its time limit; it was killed with every process it started."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} seconds")
        self.seconds = seconds


@dataclass(frozen=True)
class StepLimits:
    """What one step may use: wall time (seconds), address space per process (bytes), processes."""

    timeout: float = DEFAULT_STEP_TIMEOUT
    memory: int | None = DEFAULT_MEMORY
    pids: int | None = DEFAULT_PIDS


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

    limits: StepLimits = StepLimits()

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, out_fd: int) -> int:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out_fd,
            stderr=out_fd,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=self.limits.timeout)
        except subprocess.TimeoutExpired:
            # The step's session: whatever it started and did not move elsewhere.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise StepTimedOut(self.limits.timeout) from None

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
        limits: StepLimits = StepLimits(),
        unsafe_host_root: bool = False,
    ) -> None:
        self.build_host = build_host
        self.dest_host = dest_host
        self.sysroots = tuple(sysroots)  # top first; none: the host seed alone
        self.host_seed = host_seed
        self.limits = limits
        # Debugging only: a root caller's steps keep host uid 0 (still namespaced, capability-bounded,
        # no_new_privs, seccomp). The cook says so loudly and records it in the provenance.
        self.unsafe_host_root = unsafe_host_root

    @property
    def build_dir(self) -> str:
        return BUILD_DIR

    @property
    def dest_dir(self) -> str:
        return DEST_DIR

    def spec(self, env: Mapping[str, str], cwd: str) -> sandbox.SandboxSpec:
        spec = sandbox.build_spec(
            self.build_host,
            self.dest_host,
            sysroot=self.sysroots,
            host_seed=self.host_seed,
            env=dict(env),
            cwd=cwd,
            limits=sandbox.Limits(memory=self.limits.memory, pids=self.limits.pids),
        )
        return dataclasses.replace(spec, host_root=True) if self.unsafe_host_root else spec

    def describe(self) -> list[str]:
        return list(sandbox.describe(self.spec({}, BUILD_DIR)))

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, out_fd: int) -> int:
        try:
            return sandbox.run(
                self.spec(env, cwd),
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=out_fd,
                timeout=self.limits.timeout,
            )
        except sandbox.SandboxTimeout:
            raise StepTimedOut(self.limits.timeout) from None

    def close(self) -> None:
        pass


def shell_argv(script: str) -> list[str]:
    """How every step is run: POSIX sh with -e, so the first failing command fails the step."""
    return ["/bin/sh", "-e", "-c", script]


def ensure_dir(path: str | os.PathLike[str]) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
