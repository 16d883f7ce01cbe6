"""Shared fixtures: `cli` runs conary in-process, `conary_bin` runs it as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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
