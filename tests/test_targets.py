"""Targets (toolchains/<arch>.toml) and the target macros recipes use for native and cross builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from conary.errors import InputError
from conary.recipe import MacroContext, loads_recipe, machine_name
from conary.targets import known_targets, load_target

RECIPE = """
[package]
name = "k"
version = "1"
[source]
path = "."
[build]
make = "make ARCH=%(kernel_arch)s CROSS_COMPILE=%(cross_compile)s CFLAGS='%(target_cflags)s'"
install = "echo %(arch)s %(gnu_triple)s %(musl_triple)s"
"""


def test_every_shipped_target_loads_with_its_qemu_and_image_settings() -> None:
    assert known_targets() == ["aarch64", "riscv64", "x86_64"]
    for arch in known_targets():
        target = load_target(arch)
        assert target.arch == arch
        assert target.gnu_triple.startswith(arch.replace("_", "-") if arch != "x86_64" else "x86_64")
        assert target.qemu.system.startswith("qemu-system-")
        assert target.image.root_partition_type.startswith("root-")
        assert target.cross_packages, arch


def test_an_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(InputError) as err:
        load_target("sparc64")
    assert "unknown target 'sparc64'" in str(err.value)
    assert "aarch64, riscv64, x86_64" in (err.value.hint or "")


def test_a_target_file_missing_a_key_names_it(tmp_path: Path) -> None:
    (tmp_path / "mips.toml").write_text('[target]\narch = "mips"\n[qemu]\n[image]\n')
    with pytest.raises(InputError) as err:
        load_target("mips", tmp_path)
    assert "missing key 'debian_arch'" in str(err.value)


def test_a_cross_target_expands_to_the_cross_tool_prefix() -> None:
    recipe = loads_recipe(RECIPE, "k.recipe.toml")
    cross = next(a for a in known_targets() if a != machine_name())
    target = load_target(cross)
    expanded = recipe.expand(MacroContext(machine=target.macros()))
    assert expanded.build.make == (
        f"make ARCH={target.kernel_arch} CROSS_COMPILE={target.gnu_triple}- CFLAGS='{target.cflags}'"
    )
    assert expanded.build.install == f"echo {cross} {target.gnu_triple} {target.musl_triple}"


def test_a_native_build_has_no_tool_prefix() -> None:
    recipe = loads_recipe(RECIPE, "k.recipe.toml")
    expanded = recipe.expand(MacroContext())
    assert "CROSS_COMPILE= " in expanded.build.make
    assert expanded.build.install.startswith(f"echo {machine_name()} ")
    native = load_target(machine_name())
    assert native.is_native and native.macros().cross_compile == ""
