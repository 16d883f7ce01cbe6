"""The minimal profile for x86_64 through Base, with sources from Debian's source archive (cached in
the shared source cache): one bootstrap in one work dir, shared by every test here.

The seed is the host's /usr (`--seed host`), read-only under every build root; the seed lock's own
import is tested in test_bootstrap_seed.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conary.runtime import PackageSource, install_packages

pytestmark = [pytest.mark.slow, pytest.mark.network]


def conary(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conary", *map(str, args)], capture_output=True, text=True, timeout=3000
    )
    if check and result.returncode != 0:
        tail = result.stderr[-3000:]
        raise AssertionError(f"conary {args} exited {result.returncode}:\n{result.stdout}\n{tail}")
    return result


@pytest.fixture(scope="session")
def minimal_x86_64(tmp_path_factory: pytest.TempPathFactory, shared_source_cache: Path) -> dict[str, object]:
    work = tmp_path_factory.mktemp("bootstrap-minimal") / "work"
    options = ["--seed", "host", "--source-cache", shared_source_cache, "--jobs", "2"]
    conary("bootstrap", "init", "--target", "x86_64", "--profile", "minimal", "--work", work, *options)
    run = conary("bootstrap", "base", "--work", work)
    return {"work": work, "run": run}


def test_every_stage_to_base_is_done(minimal_x86_64: dict[str, object]) -> None:
    work = minimal_x86_64["work"]
    status = json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)
    states = {s["name"]: s["state"] for s in status["stages"]}
    assert states["stage1"] == states["stage2"] == states["base"] == "done"
    base = {p["name"] for s in status["stages"] if s["name"] == "base" for p in s["packages"]}
    assert base == {"busybox-static", "linux", "minimal-init", "zlib", "xz", "hello"}


def test_stage2_reports_each_stage1_package(minimal_x86_64: dict[str, object]) -> None:
    work = minimal_x86_64["work"]
    report = tomllib.loads((work / "stage2-report.toml").read_text())
    verdicts = {p["package"]: p for p in report["packages"]}
    assert set(verdicts) == {"linux-headers", "musl"}
    out = minimal_x86_64["run"].stdout
    for name, p in verdicts.items():
        assert p["verdict"] == ("reproducible" if p["first"] == p["second"] else "differs")
        word = "reproducible" if p["verdict"] == "reproducible" else "NOT reproducible"
        assert f"  {name}: {word}" in out


def test_base_runs_in_a_root_made_by_the_runtime(minimal_x86_64: dict[str, object], tmp_path: Path) -> None:
    work = minimal_x86_64["work"]
    repo = work / "repo"
    # musl's libc.so (the dynamic linker's target) is classed :devel by the path rules, as an
    # unversioned .so, so the C library is installed with that component.
    musl = [PackageSource(p, ("runtime", "lib", "devel")) for p in (repo / "stage1").glob("musl-*.ccs")]
    packages = [*sorted((repo / "base").glob("*.ccs")), *musl]
    root = tmp_path / "root"
    # Without the dependency check: xz's helper scripts ask for /bin/bash, which the minimal system
    # has not, and the scan records no soname provide for musl's libc.so outside the library dirs.
    install_packages(root, packages, allow_untrusted=True, check_deps=False)
    assert (root / "boot" / "vmlinuz-6.12.38").stat().st_size > 500_000
    assert "conary: booted x86_64" in (root / "etc" / "init.d" / "rcS").read_text()
    busybox = root / "bin" / "busybox"
    with busybox.open("rb") as handle:
        elf = ELFFile(handle)
        assert elf["e_machine"] == "EM_X86_64"
        assert not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments())  # static
    shell = ("sandbox", "run", "--sysroot", root, "--", "/bin/busybox", "sh", "-c")
    ran = conary(*shell, "echo conary: $(uname -m)")
    assert ran.stdout == "conary: x86_64\n"
    hello = conary("sandbox", "run", "--sysroot", root, "--", "/usr/bin/hello")
    assert hello.stdout == "Hello, world!\n"
    xz = conary(*shell, "echo abc | xz | xz -d")
    assert xz.stdout == "abc\n"


def test_no_op_rerun_and_a_leaf_change(minimal_x86_64: dict[str, object], tmp_path: Path) -> None:
    work = minimal_x86_64["work"]
    again = conary("bootstrap", "base", "--work", work)
    assert "built" not in again.stderr and "stage1: done" in again.stdout
    # Event lines read "conary: STAGE [i/n] ACTION NAME": every package is cached.
    events = [line.split() for line in again.stderr.splitlines() if line.startswith("conary: ")]
    assert events and all(words[3] == "cached" for words in events), again.stderr
