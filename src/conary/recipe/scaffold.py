"""The commented starting point `conary new NAME` writes."""

from __future__ import annotations

import os
from pathlib import Path

from conary.errors import InputError
from conary.fsutil import atomic_write_bytes
from conary.recipe.loader import NAME_RE

_TEMPLATE = """\
# {name}.recipe.toml: a Conary recipe. Reference: docs/recipe-format.md
# Check it with: conary recipe check {name}.recipe.toml
# %(macro)s is replaced everywhere: name, version, release, destdir, jobs, target,
# sysroot, build, stage and any key of [variables]. Write %% for a literal percent sign.

[package]
name = "{name}"
version = "1.0"
# release = "1"                # defaults to "1"; bump it to rebuild the same version
summary = "One line about {name}"
description = \"\"\"
A longer description of {name}.
\"\"\"
license = "MIT"                # an SPDX identifier
homepage = "https://example.org/{name}"

[source]
# The checksum names the bytes; the URL only says where they may be fetched.
# Replace the zeros with the real digest (sha256sum FILE); md5 is accepted only for LFS sums.
archive = "https://example.org/releases/%(name)s-%(version)s.tar.gz"
checksum = "sha256:{zeros}"
# extract_dir = "%(name)s-%(version)s"   # the unpacked top directory, if it differs
# path = "src"                 # instead of archive + checksum: a local tree beside the recipe

# [[source.additional]]          # more archives, unpacked into the main tree
# url = "https://example.org/extra-1.0.tar.gz"
# checksum = "sha256:..."
# extract_to = "extra"

# [patches]
# files = [{{ file = "fix-build.patch", strip = 1 }}]

[build]
requires = []                  # packages needed at run time
makedepends = []               # packages installed into the build root only
configure = "./configure --prefix=/usr"
make = "make -j%(jobs)s"
# check = "make check"         # a failure fails the cook unless check_optional = true
install = "make DESTDIR=%(destdir)s install"

# [build.environment]
# CFLAGS = "-O2"

# [components]                   # override the automatic component split (absolute globs)
# doc = ["/usr/share/%(name)s/examples/**"]

# [variables]
# prefix = "/usr"
"""

PLACEHOLDER_DIGEST = "0" * 64


def scaffold_text(name: str) -> str:
    if not NAME_RE.match(name):
        raise InputError(
            f"invalid package name {name!r}",
            hint="use letters, digits and . _ + - (starting with a letter or digit)",
        )
    return _TEMPLATE.format(name=name, zeros=PLACEHOLDER_DIGEST)


def write_scaffold(name: str, output: str | os.PathLike[str] = ".", *, force: bool = False) -> Path:
    """Write NAME.recipe.toml into *output*; an existing file is replaced only with *force*."""
    text = scaffold_text(name)
    target = Path(output) / f"{name}.recipe.toml"
    if target.exists() and not force:
        raise InputError(f"{target} already exists", where="new", hint="pass --force to overwrite it")
    atomic_write_bytes(target, text.encode("utf-8"))
    return target
