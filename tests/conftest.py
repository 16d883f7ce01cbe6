"""Shared fixtures: `cli` runs conary in-process, `conary_bin` runs it as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

XDG_DIRS = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME")
# Variables that would send conary's caches and keys elsewhere than the XDG dirs.
_REDIRECTS = ("CONARY_SOURCE_CACHE", "CONARY_KEY_DIR")


@pytest.fixture(scope="session", autouse=True)
def private_xdg_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """XDG_CACHE_HOME and XDG_CONFIG_HOME point at fresh temporary dirs for the whole session, so no
    test writes to the user's ~/.cache or ~/.config (source cache, work dirs, default signing key,
    mirror config), even one that forgets its own monkeypatch. Subprocesses inherit them."""
    base = tmp_path_factory.mktemp("xdg")
    saved = {name: os.environ.get(name) for name in (*XDG_DIRS, *_REDIRECTS)}
    dirs = {name: base / name.removeprefix("XDG_").removesuffix("_HOME").lower() for name in XDG_DIRS}
    for name, path in dirs.items():
        path.mkdir()
        os.environ[name] = str(path)
    for name in _REDIRECTS:
        os.environ.pop(name, None)
    yield dirs
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `conary ARGS...` in-process and capture its exit code and output."""
    from conary.cli.main import main

    def run(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def conary_bin() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed console script in a subprocess (for tests that need a real process)."""
    exe = shutil.which("conary") or str(Path(sys.executable).with_name("conary"))

    def run(*args: str | os.PathLike[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload]
            [exe, *map(str, args)], capture_output=True, text=True, **kwargs
        )

    return run


@pytest.fixture(scope="session")
def shared_source_cache() -> Path:
    """One content-addressed source cache for every test that fetches real upstream sources.

    Entries are named by checksum and written atomically, so tests (and test runs) can share it
    safely: a kernel tarball fetched by one test is reused by every other test in the run. CI starts
    from a fresh clone, so it fills this once per run; `CONARY_TEST_SOURCE_CACHE` moves it.
    """
    path = Path(os.environ.get("CONARY_TEST_SOURCE_CACHE", REPO_ROOT / ".cache" / "sources"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def bootstrap_base_dir() -> Path:
    """Where the tests' bootstraps keep their work dirs: under .cache like the source cache, so a
    later run on this checkout finds every checkpoint (CI starts from a fresh clone and builds
    once); `CONARY_TEST_BOOTSTRAP_DIR` moves it."""
    return Path(os.environ.get("CONARY_TEST_BOOTSTRAP_DIR", REPO_ROOT / ".cache" / "test-bootstrap"))


def bootstrap_minimal(
    arch: str, source_cache: Path, locks: tuple[str, ...], *options: str
) -> dict[str, object]:
    """The minimal profile bootstrapped for ARCH through the Image stage in a copy of the distro
    tree (made afresh; the work dir persists). The locks are the shipped ones, or refreshed into the
    copy when Debian has replaced a pinned .deb: tests/helpers_deb.py says which, and so does the
    printed report."""
    from conary.fetch import SourceCache
    from conary.recipe.localtree import copy_ignore
    from helpers_deb import lock_files

    base = bootstrap_base_dir() / arch
    tree = base / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for name in ("stages", "recipes", "images", "src"):
        shutil.copytree(REPO_ROOT / name, tree / name, ignore=copy_ignore)
    report: list[str] = []
    for lock in locks:
        lock_file = tree / "stages" / "seed" / lock
        apt_dir = source_cache / ".debian-apt-deb"
        lock_files(lock_file, SourceCache(source_cache), apt_dir, lock_file.parent, report)
    print("\n".join(report))
    work = base / "work"
    profile = tree / "stages" / "minimal.toml"
    init = ["bootstrap", "init", "--target", arch, "--profile", profile, "--work", work]
    init += ["--source-cache", source_cache, "--jobs", "2", *options]
    for args in (init, ["bootstrap", "image", "--work", work]):
        run = subprocess.run(
            [sys.executable, "-m", "conary", *map(str, args)], capture_output=True, text=True, timeout=3600
        )
        if run.returncode != 0:
            raise AssertionError(
                f"conary {args} exited {run.returncode}:\n{run.stdout}\n{run.stderr[-4000:]}"
            )
    disk = Path(run.stdout.strip().splitlines()[-1])
    return {"arch": arch, "work": work, "run": run, "disk": disk, "tree": tree}


@pytest.fixture(scope="session")
def minimal_x86_64(shared_source_cache: Path) -> dict[str, object]:
    """x86_64 through every stage, Stage2 and the Conary stage included, once per run."""
    return bootstrap_minimal("x86_64", shared_source_cache, ("x86_64.lock", "conary-x86_64.lock"))


@pytest.fixture(scope="session")
def minimal_cross(shared_source_cache: Path) -> Callable[[str], dict[str, object]]:
    """A foreign target (aarch64, riscv64) from its cross seed through Base and the Image stage,
    once per run and target. Stage2 is left out (x86_64's run covers it) and so is the Conary stage,
    which is required for x86_64 only (docs/bootstrap.md)."""
    done: dict[str, dict[str, object]] = {}

    def get(arch: str) -> dict[str, object]:
        if arch not in done:
            locks = (f"{arch}.lock",)
            done[arch] = bootstrap_minimal(arch, shared_source_cache, locks, "--skip-stage2", "--skip-conary")
        return done[arch]

    return get
