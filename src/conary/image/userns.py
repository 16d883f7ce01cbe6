"""Running the image tools (mkfs, debugfs, systemd-repart) in a user namespace over the work directory.

The caller's uid is root inside, so the trees it made are root:root to the tools and in the image,
without the host's root. The host's /usr is the toolchain (read-only); the work directory is /image
(read-write); a root that lives elsewhere is bound read-only over /image/root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from conary.errors import ConaryError
from conary.sandbox import Bind, Operation, SandboxSpec, base_ops, host_toolchain_ops, run

WORK = "/image"
TIMEOUT = 1800.0
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_tools(
    what: str,
    argv: Sequence[str],
    work: Path,
    *,
    log: Path,
    env: Mapping[str, str],
    root: Path | None = None,
    extra: Sequence[Operation] = (),
) -> None:
    """Run ARGV over WORK; its output goes to LOG (which outlives WORK). A failure names WHAT and the
    log's last line."""
    (work / "tmp").mkdir(exist_ok=True)
    ops: list[Operation] = [
        *host_toolchain_ops(),
        *base_ops(),
        Bind(str(work), WORK, readonly=False),
        Bind(str(work / "tmp"), "/var/tmp", readonly=False),
        *extra,
    ]
    if root is not None:
        (work / "root").mkdir(exist_ok=True)
        ops.append(Bind(str(root), f"{WORK}/root", readonly=True))
    full_env = {"PATH": PATH, "TMPDIR": "/var/tmp", "LC_ALL": "C", "HOME": "/var/tmp", **env}
    spec = SandboxSpec(operations=tuple(ops), user_namespace=True, env=full_env, cwd=WORK)
    with open(log, "ab") as out:
        code = run(spec, list(argv), stdout=out, stderr=out, timeout=TIMEOUT)
    if code != 0:
        last = tail(log, 1)
        raise ConaryError(
            f"{what} failed with exit code {code}" + (f": {last}" if last else ""),
            where="image build",
            hint=f"the tools' log: {log}",
        )
