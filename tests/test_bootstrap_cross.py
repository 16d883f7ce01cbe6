"""The minimal profile for the foreign targets, aarch64 and riscv64, through Base from the cross seed:
the shipped lock's Debian packages (the build machine's toolchain plus Debian's cross compilers),
with sources from Debian's source archive (cached in the shared source cache). One bootstrap per
target, in one work dir shared by every test of that target and by the image tests that boot the
target's disk (tests/conftest.py).

Base's programs are checked as the target's: ELF headers read with pyelftools, and run under
qemu-user (Debian's qemu-user-static) from a root the runtime assembles from Base's and Stage1's
packages. Debian replaces versions at point releases: when a pinned .deb has left the archive, the
lock is resolved again into the test's copy of the tree (the shipped lock stays pinned), and the
test says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conary.runtime import PackageSource, install_packages
from conary.targets import load_target

pytestmark = [pytest.mark.slow, pytest.mark.network]

# Each target's ELF machine, and the Kconfig symbol of its kernel architecture.
MACHINES = {"aarch64": "EM_AARCH64", "riscv64": "EM_RISCV"}
KERNEL_ARCH_OPTION = {"aarch64": "CONFIG_ARM64=y", "riscv64": "CONFIG_RISCV=y"}


def conary(*args: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conary", *map(str, args)], capture_output=True, text=True, timeout=3000
    )
    if result.returncode != 0:
        tail = result.stderr[-3000:]
        raise AssertionError(f"conary {args} exited {result.returncode}:\n{result.stdout}\n{tail}")
    return result


@pytest.fixture(scope="session", params=sorted(MACHINES))
def cross_bootstrap(request: pytest.FixtureRequest, minimal_cross) -> dict[str, object]:
    """ARCH bootstrapped through the Image stage from its seed lock (tests/conftest.py)."""
    return minimal_cross(request.param)


@pytest.fixture(scope="session")
def cross_root(cross_bootstrap: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root the runtime makes from Base's packages and Stage1's musl (the dynamic linker)."""
    repo = Path(cross_bootstrap["work"]) / "repo"
    # musl's libc.so (the dynamic linker's target) is classed :devel by the path rules, as an
    # unversioned .so, so the C library is installed with that component.
    musl = [PackageSource(p, ("runtime", "lib", "devel")) for p in (repo / "stage1").glob("musl-*.ccs")]
    packages = [*sorted((repo / "base").glob("*.ccs")), *musl]
    root = tmp_path_factory.mktemp(f"root-{cross_bootstrap['arch']}")
    # Without the dependency check: xz's helper scripts ask for /bin/bash, which the minimal system
    # has not, and the scan records no soname provide for musl's libc.so outside the library dirs.
    install_packages(root, packages, allow_untrusted=True, check_deps=False)
    return root


def qemu_user(arch: str, root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ROOT's program under the target's qemu-user; -L makes ROOT the prefix the emulated
    program's absolute paths (its dynamic linker, its libraries) are looked up in first."""
    qemu = load_target(arch).qemu.user
    assert shutil.which(qemu), f"{qemu} is missing (Debian package qemu-user-static)"
    return subprocess.run(
        [qemu, "-L", str(root), str(root / argv[0].lstrip("/")), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )


def elf_header(path: Path) -> tuple[str, str | None]:
    """The ELF machine of PATH and its program interpreter (None: linked statically)."""
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        interps = [seg.get_interp_name() for seg in elf.iter_segments() if seg["p_type"] == "PT_INTERP"]
        return elf["e_machine"], interps[0] if interps else None


def test_every_stage_to_base_is_done(cross_bootstrap: dict[str, object]) -> None:
    work = cross_bootstrap["work"]
    status = json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)
    assert status["seed"] == "done"
    states = {s["name"]: s["state"] for s in status["stages"]}
    assert states["stage1"] == states["base"] == "done"
    assert states["stage2"] == states["conary"] == "skipped"
    assert states["image"] == "done"
    base = {p["name"] for s in status["stages"] if s["name"] == "base" for p in s["packages"]}
    assert base == {"busybox", "linux", "minimal-init", "zlib", "xz", "hello"}


def test_busybox_is_a_static_elf_of_the_target_and_runs_under_qemu_user(
    cross_bootstrap: dict[str, object], cross_root: Path
) -> None:
    arch = str(cross_bootstrap["arch"])
    machine, interp = elf_header(cross_root / "bin" / "busybox")
    assert machine == MACHINES[arch]
    assert interp is None  # static against Stage1's musl
    applets = qemu_user(arch, cross_root, "/bin/busybox", "--list")
    assert applets.returncode == 0, applets.stderr
    assert {"sh", "init", "mount", "echo"} <= set(applets.stdout.split())
    # qemu-user emulates one program: what that program execs runs natively, so every command here
    # is an applet or a shell builtin (uname reports the emulated machine).
    machine_name = qemu_user(arch, cross_root, "/bin/busybox", "uname", "-m")
    assert (machine_name.returncode, machine_name.stdout) == (0, f"{arch}\n"), machine_name.stderr
    shell = qemu_user(arch, cross_root, "/bin/busybox", "sh", "-c", "echo conary: $((6 * 7))")
    assert (shell.returncode, shell.stdout) == (0, "conary: 42\n"), shell.stderr


def test_hello_and_xz_run_under_qemu_user_with_musls_loader(
    cross_bootstrap: dict[str, object], cross_root: Path
) -> None:
    arch = str(cross_bootstrap["arch"])
    machine, interp = elf_header(cross_root / "usr" / "bin" / "hello")
    assert machine == MACHINES[arch]
    if interp is not None:  # dynamic: musl's loader, from Stage1's package in the root
        assert interp == f"/usr/lib/ld-musl-{arch}.so.1"
        assert (cross_root / interp.lstrip("/")).exists()
    hello = qemu_user(arch, cross_root, "/usr/bin/hello")
    assert (hello.returncode, hello.stdout) == (0, "Hello, world!\n"), hello.stderr
    # xz links Base's liblzma through the same loader.
    assert elf_header(cross_root / "usr" / "bin" / "xz")[0] == MACHINES[arch]
    version = qemu_user(arch, cross_root, "/usr/bin/xz", "--version")
    assert version.returncode == 0 and version.stdout.startswith("xz (XZ Utils) 5.4.1"), version.stderr


def test_kernel_and_init_are_the_targets(cross_bootstrap: dict[str, object], cross_root: Path) -> None:
    arch = str(cross_bootstrap["arch"])
    assert (cross_root / "boot" / "vmlinuz-6.12.38").stat().st_size > 500_000
    config = (cross_root / "boot" / "config-6.12.38").read_text().splitlines()
    assert KERNEL_ARCH_OPTION[arch] in config
    assert f"conary: booted {arch}" in (cross_root / "etc" / "init.d" / "rcS").read_text()
