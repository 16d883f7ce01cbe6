"""Facts defined once: the cross settings are the recipe's own Cross, and the scriptlet sandbox modes
are one tuple that the install operations and the scriptlet runner share."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from conary.cook import environment, step_environment
from conary.errors import InputError
from conary.recipe import Cross, loads_recipe
from conary.runtime import init_root, operations, scriptlets

CROSS_RECIPE = """\
[package]
name = "x"
version = "1"

[source]
path = "src"

[cross]
target = "aarch64-linux-gnu"
sysroot = "/mnt/lfs"
cross_tools = "/tools"
cc = "clang"
"""


def test_step_environment_takes_the_recipes_cross_table_as_it_is() -> None:
    assert typing.get_type_hints(step_environment)["cross"] == Cross | None
    assert not hasattr(environment, "CrossTools")
    cross = loads_recipe(CROSS_RECIPE).cross
    env = step_environment(name="x", version="1", jobs=1, source_date_epoch=0, cross=cross)
    assert (env["CC"], env["CXX"], env["LFS"], env["LFS_TGT"]) == (
        "clang",
        "aarch64-linux-gnu-g++",
        "/mnt/lfs",
        "aarch64-linux-gnu",
    )
    assert env["PATH"].startswith("/tools/bin:")


def test_sandbox_modes_are_one_tuple_with_the_default_first(tmp_path: Path) -> None:
    assert not hasattr(operations, "SANDBOX_MODES")
    assert scriptlets.SANDBOX_MODES == ("auto", "always", "never")
    init_root(tmp_path)
    with pytest.raises(InputError) as info:
        operations.install(tmp_path, [], sandbox="sometimes")
    assert info.value.render() == "invalid sandbox mode 'sometimes' (hint: use one of auto, always, never)"
