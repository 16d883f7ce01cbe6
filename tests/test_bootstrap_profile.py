"""Profiles (stages/<name>.toml): the shipped ones load; every malformed one is one precise error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conary.bootstrap import STAGE_NAMES, load_profile
from conary.errors import InputError
from conary.targets import targets_dir

GOOD_RECIPE = """\
[package]
name = "{name}"
version = "1.0"

[source]
archive = "https://example.org/{name}-1.0.tar.gz"
checksum = "sha256:{digest}"

[build]
install = "true"
"""


def make_tree(tmp_path: Path, profile: str, recipes: tuple[str, ...] = ("a", "b", "c")) -> Path:
    """A distro tree: stages/test.toml and recipes/NAME.recipe.toml for each name."""
    (tmp_path / "stages").mkdir(parents=True)
    (tmp_path / "recipes").mkdir()
    for i, name in enumerate(recipes):
        (tmp_path / "recipes" / f"{name}.recipe.toml").write_text(
            GOOD_RECIPE.format(name=name, digest=f"{i + 1:064x}")
        )
    path = tmp_path / "stages" / "test.toml"
    path.write_text(textwrap.dedent(profile))
    return path


GOOD = """\
[profile]
name = "test"
targets = ["x86_64"]

[seed]
packages = ["build-essential"]

[[stages]]
name = "stage1"
recipes = ["recipes/a.recipe.toml"]
root = ["seed"]

[[stages]]
name = "stage2"
optional = true
rebuild = "stage1"
root = ["seed", "stage1"]

[[stages]]
name = "base"
recipes = ["recipes"]
root = ["seed", "stage1"]
"""


def load(path: Path):
    return load_profile(str(path), targets_directory=targets_dir())


def test_shipped_minimal_profile_loads_with_every_recipe() -> None:
    profile = load_profile("minimal")
    assert profile.stage_names() == ("stage1", "stage2", "base", "conary", "image")
    names = {
        p.parent.name if p.name == "recipe.toml" else p.name.split(".")[0]
        for p in profile.recipes_of(profile.stage("base"))
    }
    assert {"busybox", "zlib", "xz", "hello"} <= names
    assert profile.recipes_of(profile.stage("stage2")) == profile.stage("stage1").recipes
    assert all(p.is_file() for s in profile.stages for p in profile.recipes_of(s))
    conary = profile.stage("conary")
    assert not conary.is_optional_for("x86_64") and conary.is_optional_for("aarch64")
    assert conary.debian is not None and conary.debian.lock_name("x86_64") == "conary-x86_64"
    assert {"dpkg", "tar"} == set(conary.debian.omit) and "python3" in conary.debian.packages
    assert "conary" in conary.image_packages
    image = profile.stage("image")
    assert image.image is not None and image.image.is_file() and image.root == ("base", "conary")


def test_good_profile_expands_directories_and_keeps_order(tmp_path: Path) -> None:
    profile = load(make_tree(tmp_path, GOOD))
    base = profile.stage("base")
    assert [p.name for p in base.recipes] == ["a.recipe.toml", "b.recipe.toml", "c.recipe.toml"]
    assert profile.stage("stage2").rebuild == "stage1"
    assert profile.seed.packages == ("build-essential",)
    assert profile.seed.suite == "bookworm"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[seed]", "[seed]\nsuit = 'trixie'"), "seed.suit: unknown key (hint: did you mean 'suite'?)"),
        (
            ('name = "base"', 'name = "bsae"'),
            "stages[2].name: unknown stage 'bsae' (hint: did you mean 'base'?)",
        ),
        (('rebuild = "stage1"', 'rebuild = "base"'), "stages[1].rebuild: 'base' is not an earlier stage"),
        (
            ('root = ["seed"]', 'root = ["seed", "base"]'),
            "stages[0].root: 'base' is neither 'seed' nor an earlier stage",
        ),
        (
            ('recipes = ["recipes/a.recipe.toml"]', 'recipes = ["recipes/zz.recipe.toml"]'),
            "stages[0].recipes[0]: recipe 'recipes/zz.recipe.toml' not found",
        ),
        (('targets = ["x86_64"]', 'targets = ["mips"]'), "profile.targets: unknown target 'mips'"),
        (("optional = true", "optional = 'yes'"), "stages[1].optional: expected true or false, got a string"),
        (("[profile]", "[profile]\ncolour = 1"), "profile.colour: unknown key"),
    ],
)
def test_bad_profile_is_one_error_naming_file_and_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = make_tree(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(InputError) as caught:
        load(path)
    assert caught.value.where == str(path)
    assert message in caught.value.render()


def test_stages_out_of_order_or_twice(tmp_path: Path) -> None:
    swapped = GOOD.replace('name = "stage1"', 'name = "TMP"').replace('name = "base"', 'name = "stage1"')
    swapped = swapped.replace('name = "TMP"', 'name = "base"')
    with pytest.raises(InputError, match="comes after"):
        load(make_tree(tmp_path / "a", swapped))
    twice = GOOD.replace('name = "base"', 'name = "stage2"')
    with pytest.raises(InputError, match="listed twice"):
        load(make_tree(tmp_path / "b", twice))


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        load_profile("nosuch")
    assert "minimal" in (caught.value.hint or "")


def test_stage_names_are_the_documented_ones() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "profiles.md").read_text()
    for name in STAGE_NAMES:
        assert f"`{name}`" in text
