"""A small real bootstrap profile for tests: six C programs in three stages, built on the host seed.

Each package compiles one program from a tarball made here and installs it as /usr/bin/NAME. A
package of a later stage runs a program of an earlier stage while it builds (the stage's build
root must hold it) and embeds that program's output, so a change upstream changes its output.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

from conary.targets import targets_dir

MTIME = 1_700_000_000

# (stage, name, a program of an earlier stage it runs while building, or None)
PACKAGES = (
    ("stage1", "alpha", None),
    ("stage1", "bravo", None),
    ("base", "charlie", "alpha"),
    ("base", "delta", "bravo"),
    ("conary", "echo", "charlie"),
    ("conary", "foxtrot", None),
)

SOURCE = """\
#include <stdio.h>
#ifndef UPSTREAM
#define UPSTREAM "none"
#endif
int main(void) { printf("%s built on %s\\n", NAME, UPSTREAM); return 0; }
"""

RECIPE = """\
[package]
name = "{name}"
version = "1.0"
summary = "bootstrap fixture {name}"
license = "MIT"

[source]
archive = "{archive}"
checksum = "sha256:{digest}"

[build]
make = '''
upstream=none
{probe}
cc -O2 -DNAME='"{name}"' -DUPSTREAM="\\"$upstream\\"" -o {name} {name}.c
'''
install = "install -D -m 755 {name} %(destdir)s/usr/bin/{name}"
"""

PROFILE = """\
[profile]
name = "fixture"
targets = ["x86_64"]

[[stages]]
name = "stage1"
recipes = [{stage1}]
root = ["seed"]

[[stages]]
name = "base"
recipes = [{base}]
root = ["seed", "stage1"]

[[stages]]
name = "conary"
recipes = [{conary}]
root = ["seed", "stage1", "base"]
"""


def _tarball(path: Path, name: str) -> bytes:
    data = SOURCE.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        top = tarfile.TarInfo(f"{name}-1.0")
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, MTIME
        tar.addfile(top)
        info = tarfile.TarInfo(f"{name}-1.0/{name}.c")
        info.size, info.mode, info.mtime = len(data), 0o644, MTIME
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def make_fixture_tree(root: Path) -> Path:
    """A distro tree under *root* (recipes/, stages/fixture.toml, toolchains/); returns the profile."""
    (root / "recipes").mkdir(parents=True)
    (root / "stages").mkdir()
    shutil.copytree(targets_dir(), root / "toolchains")
    stages: dict[str, list[str]] = {"stage1": [], "base": [], "conary": []}
    for stage, name, upstream in PACKAGES:
        tarball = root / "recipes" / f"{name}-1.0.tar"
        data = _tarball(tarball, name)
        probe = f'upstream="$({upstream})"' if upstream else ""
        (root / "recipes" / f"{name}.recipe.toml").write_text(
            RECIPE.format(
                name=name, archive=tarball.name, digest=hashlib.sha256(data).hexdigest(), probe=probe
            )
        )
        stages[stage].append(f'"recipes/{name}.recipe.toml"')
    profile = root / "stages" / "fixture.toml"
    profile.write_text(PROFILE.format(**{k: ", ".join(v) for k, v in stages.items()}))
    return profile
