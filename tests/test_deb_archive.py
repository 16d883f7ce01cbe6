"""Debian's own packages, downloaded from its archive: `hello`, `zlib1g` and `libc6` convert into
packages whose files equal `dpkg-deb -x`, and make a root where hello runs in the sandbox; the
shipped x86_64 seed converts and installs into a Stage0 root where gcc compiles and runs a program,
and the aarch64 and riscv64 seeds' cross compilers build programs for their machines.

Locks are resolved now (for hello) or taken from stages/seed with a fallback: when Debian has
replaced a pinned file, the lock is resolved again into a temporary copy, and the test says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conary.ccs import generate_keypair
from conary.debian import import_deb
from conary.debian.lock import resolve_lock
from conary.debian.seed import download_lock, import_seed, lock_path
from conary.fetch.cache import SourceCache
from conary.runtime import install_packages
from conary.targets import load_target
from helpers_deb import ccs_tree, dpkg_tree, lock_files

pytestmark = [pytest.mark.network]


@pytest.fixture
def apt_state(shared_source_cache: Path) -> Path:
    # Beside the shared source cache, so the Packages lists are fetched once per run too.
    return shared_source_cache / ".debian-apt-deb"


def _sandbox(root: Path, *command: str, rw: Path | None = None) -> subprocess.CompletedProcess[str]:
    conary = shutil.which("conary") or str(Path(sys.executable).with_name("conary"))
    argv = [conary, "sandbox", "run", "--sysroot", str(root)]
    if rw is not None:
        argv += ["--rw", f"{rw}:/build", "--cwd", "/build"]
    return subprocess.run([*argv, "--", *command], capture_output=True, text=True, timeout=300)


def test_hello_zlib_and_libc_convert_and_run(
    tmp_path: Path, shared_source_cache: Path, apt_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # hello's and zlib1g's closure as Debian has it today: libc6, libgcc-s1, gcc-12-base
    lock = resolve_lock(
        "hello",
        ["hello", "zlib1g"],
        suite="bookworm",
        architecture="amd64",
        state_dir=apt_state,
        essential=False,
    )
    assert {"hello", "zlib1g", "libc6"} <= {d.name for d in lock.debs}
    debs = download_lock(lock, SourceCache(shared_source_cache), state_dir=apt_state)
    key = generate_keypair(tmp_path / "key")[0]
    packages = []
    for deb in debs:
        imported = import_deb(deb, tmp_path / "ccs", key)
        assert ccs_tree(imported.path) == dpkg_tree(deb, tmp_path / "x" / imported.name), imported.name
        packages.append(imported.path)
    root = tmp_path / "root"
    root.mkdir()
    # every Depends and soname requirement is met by the closure: no --nodeps
    install_packages(root, packages, allow_untrusted=True)
    result = _sandbox(root, "/usr/bin/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world!\n"


@pytest.mark.slow
def test_seed_closure_makes_a_stage0_root_where_gcc_works(
    tmp_path: Path, shared_source_cache: Path, apt_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cache = SourceCache(shared_source_cache)
    report: list[str] = []
    lock, _ = lock_files(lock_path("x86_64"), cache, apt_state, tmp_path, report)
    print("\n".join(report))  # says whether the cache, a download or a refreshed copy served
    key = generate_keypair(tmp_path / "key")[0]
    paths, warnings = import_seed(lock, cache, tmp_path / "ccs", key, state_dir=apt_state)
    assert len(paths) == len(lock.debs) + 1  # the fixups package last
    assert any(w.startswith("libc6: maintainer scripts not run:") for w in warnings)
    root = tmp_path / "stage0"
    root.mkdir()
    install_packages(root, paths, allow_untrusted=True)
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o777)
    (work / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("stage0 works"); return 0; }\n')
    (work / "Makefile").write_text("hello: hello.c\n\t$(CC) -O2 -o $@ $<\n")
    script = "make CC=cc && ./hello && awk 'BEGIN { print 6 * 7 }' && yacc --version >/dev/null && whoami"
    result = _sandbox(root, "/bin/sh", "-c", script, rw=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-3:] == ["stage0 works", "42", "root"]


@pytest.mark.slow
@pytest.mark.parametrize(("target", "machine"), [("aarch64", "EM_AARCH64"), ("riscv64", "EM_RISCV")])
def test_cross_seed_compiles_for_its_target(
    tmp_path: Path,
    shared_source_cache: Path,
    apt_state: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    machine: str,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cache = SourceCache(shared_source_cache)
    report: list[str] = []
    lock, _ = lock_files(lock_path(target), cache, apt_state, tmp_path, report)
    print("\n".join(report))
    key = generate_keypair(tmp_path / "key")[0]
    paths, _ = import_seed(lock, cache, tmp_path / "ccs", key, state_dir=apt_state)
    root = tmp_path / "stage0"
    root.mkdir()
    install_packages(root, paths, allow_untrusted=True)
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o777)
    (work / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("cross"); return 0; }\n')
    triple = load_target(target).gnu_triple
    result = _sandbox(root, f"{triple}-gcc", "-static", "-O2", "-o", "hello", "hello.c", rw=work)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(work / "hello", "rb") as stream:
        assert ELFFile(stream).header["e_machine"] == machine
