"""GNU hello cooks to the same bytes as root (steps as the mapped id 1600000000) and as nobody (steps
in nobody's own user namespace): the host ids a step ran under never reach the package."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import conary
from conary.ccs.keys import generate_keypair
from conary.distro_tree import tree_dir
from conary.fetch.cache import SourceCache
from helpers_sandbox import NOBODY, SETPRIV, python_for_nobody

HELLO = tree_dir("recipes") / "hello.recipe.toml"
HELLO_SHA256 = "sha256:31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A directory nobody can use (pytest's tmp_path lives under a 0700 directory)."""
    root = Path(tempfile.mkdtemp(prefix="conary-identity-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _nobody_owned(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, NOBODY, NOBODY)
    return path


def _importable_by_nobody(workspace: Path) -> str:
    """A PYTHONPATH with conary and its dependencies that nobody can read: the checkout and the
    virtualenv may sit under a 0700 home, so copy them next to the workspace."""
    lib = workspace / "lib"
    shutil.copytree(
        Path(conary.__file__).parent, lib / "conary", ignore=shutil.ignore_patterns("__pycache__")
    )
    for packages in site.getsitepackages():
        for entry in Path(packages).iterdir():
            if (
                entry.name in ("conary", "__pycache__")
                or entry.suffix == ".pth"
                or (lib / entry.name).exists()
            ):
                continue
            if entry.is_dir():
                shutil.copytree(entry, lib / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, lib / entry.name)
    return str(lib)


@pytest.mark.network
@pytest.mark.slow
def test_hello_cooks_byte_identically_as_root_and_as_nobody(
    cli, workspace: Path, shared_source_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to cook as both root and nobody")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(workspace / "xdg-root"))
    r = cli("cook", "--fetch-only", "--source-cache", shared_source_cache, HELLO)
    assert r.code == 0, r.err
    cache = _nobody_owned(workspace / "cache")
    tarball = SourceCache(cache).path_of(HELLO_SHA256)
    _nobody_owned(tarball.parent)
    shutil.copy(SourceCache(shared_source_cache).path_of(HELLO_SHA256), tarball)
    secret, _public = generate_keypair(workspace / "key")
    os.chmod(secret, 0o644)  # a test key: nobody signs with the very same one

    common = ("--source-cache", cache, "--offline", "--key", secret)
    r = cli("cook", "--output", workspace / "root", *common, HELLO)
    assert r.code == 0, r.err
    (as_root,) = (workspace / "root").glob("*.ccs")

    out = _nobody_owned(workspace / "nobody")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": _importable_by_nobody(workspace),
        "HOME": str(_nobody_owned(workspace / "home")),
        "XDG_CACHE_HOME": str(_nobody_owned(workspace / "xdg")),
        "XDG_CONFIG_HOME": str(_nobody_owned(workspace / "xdg-config")),
    }
    command = ["cook", "--output", out, *common, HELLO]
    proc = subprocess.run(
        [*SETPRIV, python_for_nobody(), "-m", "conary", *map(str, command)],
        capture_output=True,
        text=True,
        env=env,
        cwd=workspace,
    )
    assert proc.returncode == 0, proc.stderr
    (as_nobody,) = out.glob("*.ccs")
    assert as_nobody.name == as_root.name == "hello-2.10-1.x86_64.ccs"
    assert as_nobody.read_bytes() == as_root.read_bytes()
