"""The minimal profile for x86_64, every stage: the seed from the shipped lock (Debian's .debs,
cached by sha256 in the shared source cache), Stage1, Stage2, Base with sources from Debian's source
archive, the Conary stage (Python from the lock conary-x86_64, Conary from this tree) and the Image,
booted in QEMU through OVMF and systemd-boot. One bootstrap in one work dir, shared by every test
here and by the image tests that boot the x86_64 disk (tests/conftest.py).

When Debian has replaced a pinned .deb, the lock is resolved again into the test's copy of the tree
(the shipped lock stays pinned), and the fixture prints which of cache, download or refresh happened."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conary.image import inspect_image
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


def test_every_stage_is_done_and_the_image_is_the_last_line(minimal_x86_64: dict[str, object]) -> None:
    work = minimal_x86_64["work"]
    status = json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)
    states = {s["name"]: s["state"] for s in status["stages"]}
    assert states == dict.fromkeys(("stage1", "stage2", "base", "conary", "image"), "done")
    base = {p["name"] for s in status["stages"] if s["name"] == "base" for p in s["packages"]}
    assert base == {"busybox", "linux", "minimal-init", "zlib", "xz", "hello"}
    disk = minimal_x86_64["disk"]
    assert disk == work / "image" / "minimal-x86_64.raw" and disk.is_file()
    installed = {p.name for p in inspect_image(disk).packages}
    # What the definition names, Conary, and what they require from the stages' packages.
    assert {"busybox", "minimal-init", "linux", "conary", "python3.11", "libc6"} <= installed
    assert not installed & {"dpkg", "tar", "hello", "gcc-12"}


def test_the_image_boots_and_conary_lists_the_system(
    minimal_x86_64: dict[str, object], tmp_path: Path
) -> None:
    disk = minimal_x86_64["disk"]
    log = tmp_path / "boot.log"
    booted = conary(
        "image", "boot", disk, "--arch", "x86_64", "--expect", "conary: booted x86_64", "--timeout", "900",
        "--log", log,
    )  # fmt: skip
    assert booted.stdout.strip() == "conary: booted x86_64"
    console = log.read_text(errors="replace")
    assert "Linux version 6.12.38" in console
    # systemd-boot started the kernel from the BLS entry: its command line is the entry's.
    assert f"Command line: {inspect_image(disk).boot_entry['options']}" in console
    listed = console.split("conary: installed packages:", 1)[1].split("conary: booted x86_64", 1)[0]
    assert "'conary list' failed" not in listed, listed
    # One line per package, NAME-VERSION-RELEASE.ARCH [components]: what the image's DB holds.
    # (The kernel may print between the lines: only lines of that form count.)
    lines = (re.fullmatch(r"(\S+) \[[a-z,]+\]", line.strip()) for line in listed.splitlines())
    shown = {m.group(1) for m in lines if m}
    expected = {f"{p.name}-{p.version}-{p.release}.{p.arch}" for p in inspect_image(disk).packages}
    assert shown == expected, listed


def test_a_rebuilt_image_is_byte_identical(minimal_x86_64: dict[str, object], tmp_path: Path) -> None:
    work, disk = minimal_x86_64["work"], minimal_x86_64["disk"]
    first = tmp_path / "first.raw"
    shutil.copyfile(disk, first)
    conary("bootstrap", "clean", "--stage", "image", "--work", work)
    assert not disk.exists()
    again = conary("bootstrap", "image", "--work", work)
    assert again.stdout.strip().splitlines()[-1] == str(disk)
    assert first.read_bytes() == disk.read_bytes()


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


def test_no_op_rerun(minimal_x86_64: dict[str, object]) -> None:
    work = minimal_x86_64["work"]
    again = conary("bootstrap", "image", "--work", work)
    assert "built" not in again.stderr and "stage1: done" in again.stdout
    assert "image: done" in again.stdout and "cached" in again.stdout
    assert again.stdout.strip().splitlines()[-1] == str(minimal_x86_64["disk"])
    # Event lines read "conary: STAGE [i/n] ACTION NAME": every package is cached.
    events = [re.fullmatch(r"conary: \S+ \[\d+/\d+\] (\S+) \S+", line) for line in again.stderr.splitlines()]
    assert events and all(m.group(1) == "cached" for m in events if m), again.stderr
    assert sum(1 for m in events if m) == 11, again.stderr  # stage1, stage2, base, conary


def test_a_leaf_change_rebuilds_exactly_it_and_the_image(minimal_x86_64: dict[str, object]) -> None:
    """Last in this file: it changes the shared work dir's tree (the image still boots the same)."""
    work, tree = minimal_x86_64["work"], minimal_x86_64["tree"]
    hostname = tree / "recipes" / "minimal-init" / "hostname"
    hostname.write_text("conary-leaf-change\n")
    run = conary("bootstrap", "image", "--work", work)
    # Event lines read "conary: STAGE [i/n] ACTION NAME" (the image's progress lines do not).
    events = (re.fullmatch(r"conary: \S+ \[\d+/\d+\] (\S+) (\S+)", line) for line in run.stderr.splitlines())
    actions = {m.group(2): m.group(1) for m in events if m and m.group(1) != "start"}
    assert actions["minimal-init"] == "built", run.stderr
    assert {a for n, a in actions.items() if n != "minimal-init"} == {"cached"}, run.stderr
    assert "image: done" in run.stdout and "built (" in run.stdout
