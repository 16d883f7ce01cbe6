"""The README's tour works as written: its code block, taken from README.md itself, runs in order.

The block runs in bash with `set -e` (the first failing command fails the test, with the output so
far), with a temporary HOME and XDG dirs (never the real ~/keys, ~/.cache or ~/.config), from a
scratch directory that holds the checkout's recipes/ and .venv. The tour writes below /tmp (/tmp/r,
/tmp/hello): it runs in a private mount namespace whose /tmp is a fresh tmpfs, so the real /tmp is
never touched and the scratch files vanish with the namespace.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOUR_HEADING = "## A short tour"


def tour_block(readme: str) -> str:
    """The first ```sh block of the README's tour section (the section ends at the next `## `
    heading, so sections added before or after it do not change what runs)."""
    start = readme.index(TOUR_HEADING)
    following = re.search(r"^## ", readme[start + len(TOUR_HEADING) :], re.MULTILINE)
    section = readme[start : start + len(TOUR_HEADING) + following.start() if following else None]
    block = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block is not None, "the tour section has no ```sh block"
    return block.group(1)


def test_tour_block_is_found_whatever_sections_surround_it() -> None:
    readme = (REPO / "README.md").read_text()
    block = tour_block(readme)
    assert block.startswith(". .venv/bin/activate\n")
    moved = "## Bootstrap\n\n```sh\nconary bootstrap run\n```\n\n" + readme + "\n## Images\n\n```sh\nx\n```\n"
    assert tour_block(moved) == block


# Run inside `unshare --mount`: a fresh tmpfs on /tmp, with the directories the run needs from the
# old /tmp (the checkout, the shared source cache, when they live there) bound back in place first
# through descriptors opened before the tmpfs hid them.
_LAUNCH = textwrap.dedent(
    """
    import os, subprocess, sys
    keep = [p for p in sys.argv[2:] if p == "/tmp" or p.startswith("/tmp/")]
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"], check=True)
    for path, fd in fds.items():
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/fd/{fd}", path], check=True)
    os.execvp("bash", ["bash", "-c", sys.argv[1]])
    """
)


@pytest.mark.network
@pytest.mark.slow
def test_readme_tour_runs_as_written(shared_source_cache: Path) -> None:
    block = tour_block((REPO / "README.md").read_text())
    script = "\n".join(
        [
            "set -eo pipefail",
            "mkdir -p /tmp/tour/home /tmp/tour/work",
            "cd /tmp/tour/work",
            f"ln -s {REPO}/recipes recipes",
            f"ln -s {REPO}/.venv .venv",
            "export HOME=/tmp/tour/home XDG_CACHE_HOME=/tmp/tour/home/.cache "
            "XDG_CONFIG_HOME=/tmp/tour/home/.config",
            "set -x",
            block,
            "set +x",
            # What the tour promises, checked where it wrote it.
            "test -f ~/keys/me -a -f ~/keys/me.pub",
            "test -f mytool.recipe.toml -a -f hello-oci.tar",
            "ls /tmp/hello/usr/share >/dev/null",
            "test \"$(conary sandbox run --sysroot /tmp/r -- /usr/bin/hello)\" = 'Hello, world!'",
            "conary --root /tmp/r list --json",
        ]
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("XDG_", "CONARY_", "VIRTUAL_ENV"))
    }
    env["CONARY_SOURCE_CACHE"] = str(shared_source_cache)
    command = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c", _LAUNCH]
    proc = subprocess.run(
        [*command, script, str(REPO), str(shared_source_cache)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=900,
    )
    log = f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, log
    assert "Hello, world!" in proc.stdout, log
    listed = proc.stdout.strip().splitlines()
    assert '"name": "hello"' in proc.stdout and '"name": "seed-libc"' in proc.stdout, listed[-20:]
