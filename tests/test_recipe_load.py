"""Loading the valid recipe set, the model it produces, and the loader's file-level rules."""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conary.recipe import (
    Checksum,
    Recipe,
    check_file,
    check_paths,
    check_text,
    expected_name,
    load_recipe,
    loads_recipe,
    model,
    parse_checksum,
)
from conary.recipe.schema import SCHEMA, Field

DATA = Path(__file__).parent / "data" / "recipes"
VALID = DATA / "valid"
VALID_FILES = sorted(p for p in VALID.rglob("*.toml"))
# Provenance the loader adds; these are not fields of the TOML format.
NOT_FORMAT_FIELDS = {
    ("Recipe", "path"),
    ("Recipe", "text_sha256"),
    ("Recipe", "raw_text"),
    ("Recipe", "expanded"),
}

SHA = "a" * 64
MINIMAL = f"""
[package]
name = "mini"
version = "1.0"

[source]
archive = "https://example.org/mini-1.0.tar.gz"
checksum = "sha256:{SHA}"

[build]
install = "make DESTDIR=%(destdir)s install"
"""


@pytest.fixture(scope="module")
def valid_recipes() -> list[Recipe]:
    return [load_recipe(p) for p in VALID_FILES]


def test_valid_set_is_large_enough_and_error_free() -> None:
    assert len(VALID_FILES) >= 15
    for path in VALID_FILES:
        recipe, problems = check_file(path)
        assert recipe is not None, [p.render() for p in problems]
        # The only warnings the valid set may raise are for md5 sums, which LFS publishes.
        assert all("md5 is weak" in p.message for p in problems), [p.render() for p in problems]


def _model_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(model, inspect.isclass) if dataclasses.is_dataclass(c)]


def _covered(value: Any, seen: set[tuple[str, str]]) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            if item != default:
                seen.add((type(value).__name__, f.name))
            _covered(item, seen)
    elif isinstance(value, tuple):
        for item in value:
            _covered(item, seen)


def test_valid_set_sets_every_field_of_the_model(valid_recipes: list[Recipe]) -> None:
    universe = {(c.__name__, f.name) for c in _model_classes() for f in dataclasses.fields(c)}
    universe -= NOT_FORMAT_FIELDS
    seen: set[tuple[str, str]] = set()
    for recipe in valid_recipes:
        _covered(recipe, seen)
    assert sorted(universe - seen) == []


def _schema_paths(spec: dict[str, Field], prefix: str = "") -> set[str]:
    out = set()
    for key, field in spec.items():
        path = f"{prefix}{key}"
        out.add(path)
        if field.spec:
            sub = f"{path}[]." if field.kind == "tables" else f"{path}."
            out |= _schema_paths(field.spec, sub)
    return out


def _raw_paths(value: Any, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}{key}"
            out.add(path)
            if isinstance(item, dict) and path not in ("build.environment", "variables"):
                out |= _raw_paths(item, f"{path}.")
            elif isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
                for row in item:
                    out |= _raw_paths(row, f"{path}[].")
    return out


def test_valid_set_uses_every_key_of_the_format() -> None:
    used: set[str] = set()
    for path in VALID_FILES:
        used |= _raw_paths(tomllib.loads(path.read_text()))
    assert sorted(_schema_paths(SCHEMA) - used) == []


def test_valid_set_uses_every_checksum_algorithm_and_cross_stage(valid_recipes: list[Recipe]) -> None:
    algos = {r.source.checksum.algo for r in valid_recipes if r.source.checksum}
    algos |= {a.checksum.algo for r in valid_recipes for a in r.source.additional}
    algos |= {p.checksum.algo for r in valid_recipes for p in r.patches if p.checksum}
    assert algos == {"sha256", "sha512", "md5"}
    assert {r.cross.stage for r in valid_recipes if r.cross} == {"stage0", "stage1", "stage2"}


def test_gcc_pass1_model(valid_recipes: list[Recipe]) -> None:
    gcc = next(r for r in valid_recipes if r.package.name == "gcc-pass1")
    assert [a.extract_to for a in gcc.source.additional] == ["mpfr", "gmp", "mpc"]
    assert gcc.source.additional[0].checksum.algo == "sha256"
    assert gcc.source.additional[0].url == "https://ftp.gnu.org/gnu/mpfr/mpfr-%(mpfr_version)s.tar.xz"
    assert gcc.cross is not None and gcc.cross.stage == "stage0" and gcc.is_cross
    assert gcc.build.makedepends == ("binutils-pass1",)
    assert [name for name, _ in gcc.build.steps()] == [
        "setup",
        "configure",
        "make",
        "install",
        "post_install",
    ]
    assert dict(gcc.variables)["gmp_version"] == "6.3.0"
    assert gcc.package.release == "1"  # absent release means "1"
    assert gcc.path == str(VALID / "gcc-pass1.toml")
    assert len(gcc.text_sha256) == 64 and gcc.raw_text.startswith("# LFS 12.4")


def test_glibc_patch_and_deviations(valid_recipes: list[Recipe]) -> None:
    glibc = next(r for r in valid_recipes if r.package.name == "glibc")
    (patch,) = glibc.patches
    assert patch.file == "glibc-%(version)s-fhs-1.patch" and patch.strip == 1
    assert patch.checksum is not None and patch.checksum.algo == "md5"
    assert glibc.deviations is not None and glibc.deviations.lfs_section == "5.5"
    assert [c.flag for c in glibc.deviations.changes] == ["--build", "sanity check"]
    assert glibc.deviations.changes[1].lfs is None
    assert glibc.build.sanity_check is not None
    assert glibc.cross is not None and glibc.cross.strip == "%(target)s-strip"


def test_model_is_frozen_and_hashable(valid_recipes: list[Recipe]) -> None:
    recipe = valid_recipes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.package.name = "other"  # type: ignore[misc]
    assert len({hash(r) for r in valid_recipes}) == len(valid_recipes)
    for r in valid_recipes:
        assert isinstance(r.build.requires, tuple) and isinstance(r.build.environment, tuple)


def test_checksum_dataclass() -> None:
    checksum = parse_checksum("sha256:" + "AB" * 32)
    assert checksum == Checksum("sha256", "ab" * 32)
    assert str(checksum) == "sha256:" + "ab" * 32
    assert parse_checksum("md5:" + "0f" * 16).algo == "md5"
    assert len(parse_checksum("sha512:" + "1" * 128).hexdigest) == 128


def test_md5_gives_a_warning_not_an_error() -> None:
    result = check_text(MINIMAL.replace(f"sha256:{SHA}", "md5:" + "c" * 32), "mini.toml")
    assert result.recipe is not None
    assert [(p.severity, p.key_path) for p in result.problems] == [("warning", "source.checksum")]
    assert "LFS book publishes md5" in result.problems[0].message


def test_loads_recipe_defaults() -> None:
    recipe = loads_recipe(MINIMAL)
    assert recipe.package.release == "1"
    assert recipe.source.extract is True and recipe.source.additional == ()
    assert recipe.build.chroot is False and recipe.build.check_optional is False
    assert recipe.cross is None and not recipe.is_cross
    assert recipe.patches == () and recipe.deviations is None
    assert recipe.nvr == "mini-1.0-1"


def test_toml_without_package_is_not_a_recipe(tmp_path: Path) -> None:
    (tmp_path / "versions.toml").write_text('[toolchain]\ngcc = "15.2.0"\n')
    (tmp_path / "mini.toml").write_text(MINIMAL)
    report = check_paths([tmp_path])
    assert [r.path for r in report.results] == [str(tmp_path / "mini.toml")]
    assert report.skipped == (str(tmp_path / "versions.toml"),)
    assert report.ok and report.summary() == "1 recipes, 0 errors, 0 warnings"
    # Named explicitly, it is reported rather than silently passed over.
    explicit = check_paths([tmp_path / "versions.toml"])
    assert [p.message for p in explicit.problems] == ["not a recipe: the file has no [package] table"]


def test_directory_is_searched_recursively(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "mini.toml").write_text(MINIMAL)
    (tmp_path / "a" / "notes.txt").write_text("not toml")
    assert [Path(r.path).name for r in check_paths([tmp_path]).results] == ["mini.toml"]


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("hello.recipe.toml", "hello"),
        ("hello.toml", "hello"),
        ("hello/recipe.toml", "hello"),
        ("hello.txt", None),
    ],
)
def test_expected_name_rule(file_name: str, expected: str | None) -> None:
    assert expected_name(f"/recipes/{file_name}") == expected


@pytest.mark.parametrize("file_name", ["mini.recipe.toml", "mini.toml", "mini/recipe.toml"])
def test_matching_file_names_give_no_warning(tmp_path: Path, file_name: str) -> None:
    path = tmp_path / file_name
    path.parent.mkdir(exist_ok=True)
    path.write_text(MINIMAL)
    assert check_file(path)[1] == []


def test_mismatched_file_name_warns(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(MINIMAL)
    recipe, problems = check_file(path)
    assert recipe is not None
    assert [(p.severity, p.key_path, p.message) for p in problems] == [
        (
            "warning",
            "package.name",
            "package name 'mini' does not match the file name 'other.toml' "
            "(expected mini.recipe.toml, mini.toml or mini/recipe.toml)",
        )
    ]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = check_file(tmp_path / "absent.toml")[1]
    assert [p.message for p in missing] == ["cannot read: No such file or directory"]
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'[package]\nname = "\xff"\n')
    assert check_file(binary)[1][0].message.startswith("not UTF-8 text:")


def test_missing_local_patch_warns(tmp_path: Path) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL + '\n[patches]\nfiles = [{ file = "fix-%(version)s.patch", strip = 0 }]\n')
    recipe, problems = check_file(path)
    assert recipe is not None and recipe.patches[0].strip == 0
    assert [(p.key_path, p.severity) for p in problems] == [("patches.files[0].file", "warning")]
    (tmp_path / "fix-1.0.patch").write_text("--- a\n+++ b\n")
    assert check_file(path)[1] == []


def test_check_optional_without_check_warns() -> None:
    result = check_text(MINIMAL.replace("[build]\n", "[build]\ncheck_optional = true\n"))
    assert [p.key_path for p in result.warnings] == ["build.check_optional"]


def test_placeholder_checksum_warns() -> None:
    result = check_text(MINIMAL.replace(SHA, "0" * 64))
    assert result.recipe is not None
    assert [p.message for p in result.warnings] == [
        "placeholder checksum (all zeros): replace it with the real digest"
    ]


def test_bool_is_not_an_integer() -> None:
    result = check_text(MINIMAL.replace("[build]\n", "[build]\njobs = true\n"))
    assert [(p.key_path, p.message) for p in result.errors] == [
        ("build.jobs", "expected an integer, got a boolean")
    ]


def test_package_table_of_wrong_type() -> None:
    result = check_text('package = "hello"\n')
    assert result.is_recipe
    assert [(p.key_path, p.message) for p in result.errors] == [
        ("package", "expected a table, got a string"),
        ("source", "missing required section [source]"),
    ]


def test_pathological_toml_is_a_problem_not_a_crash() -> None:
    deep = check_text("a = " + "[" * 5000)
    assert [p.message for p in deep.problems] == ["TOML nesting is too deep"]
    huge = check_text("a = " + "9" * 5000)
    assert huge.problems[0].message.startswith("TOML value error: Exceeds the limit")
