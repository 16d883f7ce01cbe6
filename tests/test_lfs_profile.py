"""The LFS 12.4 profile as data: recipes/lfs validate, stages/lfs.toml names them, the book is covered.

These tests hold the shipped tree to the book: the chapter 5-8 package list and the toolchain
checksums below are copied from LFS 12.4 (chapter 3, "All Packages"), not derived from the recipes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections import Counter
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from conary.distro_tree import tree_dir
from conary.recipe import MacroContext, Recipe, load_recipe
from conary.recipe.checksum import MD5_WARNING

LFS_RECIPES = tree_dir("recipes") / "lfs"
PROFILE = tree_dir("stages") / "lfs.toml"
STAGE_ORDER = ["stage0", "stage1", "stage2", "base", "conary", "image"]

# LFS 12.4, chapters 5 to 8: (section, package, version) for every package build of the book.
BOOK = {
    "5": [
        ("binutils", "2.45"),
        ("gcc", "15.2.0"),
        ("linux", "6.16.1"),
        ("glibc", "2.42"),
        ("libstdc++", "15.2.0"),
    ],
    "6": [
        ("m4", "1.4.20"),
        ("ncurses", "6.5-20250809"),
        ("bash", "5.3"),
        ("coreutils", "9.7"),
        ("diffutils", "3.12"),
        ("file", "5.46"),
        ("findutils", "4.10.0"),
        ("gawk", "5.3.2"),
        ("grep", "3.12"),
        ("gzip", "1.14"),
        ("make", "4.4.1"),
        ("patch", "2.8"),
        ("sed", "4.9"),
        ("tar", "1.35"),
        ("xz", "5.8.1"),
        ("binutils", "2.45"),
        ("gcc", "15.2.0"),
    ],
    "7": [
        ("gettext", "0.26"),
        ("bison", "3.8.2"),
        ("perl", "5.42.0"),
        ("python", "3.13.7"),
        ("texinfo", "7.2"),
        ("util-linux", "2.41.1"),
    ],
    "8": [
        ("man-pages", "6.15"),
        ("iana-etc", "20250807"),
        ("glibc", "2.42"),
        ("zlib", "1.3.1"),
        ("bzip2", "1.0.8"),
        ("xz", "5.8.1"),
        ("lz4", "1.10.0"),
        ("zstd", "1.5.7"),
        ("file", "5.46"),
        ("readline", "8.3"),
        ("m4", "1.4.20"),
        ("bc", "7.0.3"),
        ("flex", "2.6.4"),
        ("tcl", "8.6.16"),
        ("expect", "5.45.4"),
        ("dejagnu", "1.6.3"),
        ("pkgconf", "2.5.1"),
        ("binutils", "2.45"),
        ("gmp", "6.3.0"),
        ("mpfr", "4.2.2"),
        ("mpc", "1.3.1"),
        ("attr", "2.5.2"),
        ("acl", "2.3.2"),
        ("libcap", "2.76"),
        ("libxcrypt", "4.4.38"),
        ("shadow", "4.18.0"),
        ("gcc", "15.2.0"),
        ("ncurses", "6.5-20250809"),
        ("sed", "4.9"),
        ("psmisc", "23.7"),
        ("gettext", "0.26"),
        ("bison", "3.8.2"),
        ("grep", "3.12"),
        ("bash", "5.3"),
        ("libtool", "2.5.4"),
        ("gdbm", "1.26"),
        ("gperf", "3.3"),
        ("expat", "2.7.1"),
        ("inetutils", "2.6"),
        ("less", "679"),
        ("perl", "5.42.0"),
        ("xml-parser", "2.47"),
        ("intltool", "0.51.0"),
        ("autoconf", "2.72"),
        ("automake", "1.18.1"),
        ("openssl", "3.5.2"),
        ("libelf", "0.193"),
        ("libffi", "3.5.2"),
        ("python", "3.13.7"),
        ("flit-core", "3.12.0"),
        ("packaging", "25.0"),
        ("wheel", "0.46.1"),
        ("setuptools", "80.9.0"),
        ("ninja", "1.13.1"),
        ("meson", "1.8.3"),
        ("kmod", "34.2"),
        ("coreutils", "9.7"),
        ("diffutils", "3.12"),
        ("gawk", "5.3.2"),
        ("findutils", "4.10.0"),
        ("groff", "1.23.0"),
        ("grub", "2.12"),
        ("gzip", "1.14"),
        ("iproute2", "6.16.0"),
        ("kbd", "2.8.0"),
        ("libpipeline", "1.5.8"),
        ("make", "4.4.1"),
        ("patch", "2.8"),
        ("tar", "1.35"),
        ("texinfo", "7.2"),
        ("vim", "9.1.1629"),
        ("markupsafe", "3.0.2"),
        ("jinja2", "3.1.6"),
        ("udev", "257.8"),
        ("man-db", "2.13.1"),
        ("procps-ng", "4.0.5"),
        ("util-linux", "2.41.1"),
        ("e2fsprogs", "1.47.3"),
        ("sysklogd", "2.7.2"),
        ("sysvinit", "3.14"),
    ],
}
# The book's md5 sums (3.2 "All Packages") of the four toolchain sources.
TOOLCHAIN_MD5 = {
    "binutils-2.45.tar.xz": "dee5b4267e0305a99a3c9d6131f45759",
    "gcc-15.2.0.tar.xz": "b861b092bf1af683c46a8aa2e689a6fd",
    "glibc-2.42.tar.xz": "23c6f5a27932b435cae94e087cb8b1f5",
    "linux-6.16.1.tar.xz": "32d45755e4b39d06e9be58f6817445ee",
}
SEED = {
    "bash",
    "binutils",
    "bison",
    "coreutils",
    "diffutils",
    "findutils",
    "gawk",
    "gcc",
    "g++",
    "grep",
    "gzip",
    "m4",
    "make",
    "patch",
    "perl",
    "python3",
    "sed",
    "tar",
    "texinfo",
    "xz-utils",
}


@pytest.fixture(scope="module")
def profile() -> dict:
    with PROFILE.open("rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def recipes() -> dict[str, Recipe]:
    """Every LFS recipe by its path relative to the tree."""
    tree = LFS_RECIPES.parent.parent
    return {str(p.relative_to(tree)): load_recipe(p) for p in sorted(LFS_RECIPES.rglob("*.toml"))}


@pytest.fixture(scope="module")
def by_name(recipes: dict[str, Recipe]) -> dict[str, Recipe]:
    names = Counter(r.package.name for r in recipes.values())
    assert [n for n, c in names.items() if c > 1] == [], "package names must be unique in the tree"
    return {r.package.name: r for r in recipes.values()}


def stage_of(profile: dict) -> dict[str, str]:
    """Recipe path -> the stage that lists it."""
    return {path: s["name"] for s in profile["stages"] for path in s.get("recipes", [])}


def test_every_recipe_passes_recipe_check_with_only_md5_warnings(cli) -> None:
    r = cli("recipe", "check", "--json", LFS_RECIPES)
    assert r.code == 0, r.out + r.err
    report = json.loads(r.out)
    assert report["errors"] == 0
    assert report["recipes"] >= 80
    problems = [p for f in report["files"] for p in f["problems"]]
    assert {p["message"] for p in problems} == {MD5_WARNING}
    # One warning per md5 the files pin: every source, additional archive and patch is counted.
    md5_pins = sum(p.read_text().count('"md5:') for p in LFS_RECIPES.rglob("*.toml"))
    assert report["warnings"] == md5_pins


def test_the_profile_has_the_documented_shape(profile: dict) -> None:
    assert profile["profile"]["name"] == "lfs"
    assert profile["profile"]["targets"] == ["x86_64"]
    assert set(profile["seed"]["packages"]) == SEED
    names = [s["name"] for s in profile["stages"]]
    assert names == STAGE_ORDER
    optional = {s["name"] for s in profile["stages"] if s.get("optional")}
    assert optional == {"stage2", "conary"}
    stage2 = next(s for s in profile["stages"] if s["name"] == "stage2")
    assert stage2["rebuild"] == "stage1"
    for stage in profile["stages"]:
        for root in stage.get("root", []):
            assert root == "seed" or names.index(root) < names.index(stage["name"]), (stage["name"], root)


def test_the_profile_names_every_recipe_and_only_existing_ones(
    profile: dict, recipes: dict[str, Recipe]
) -> None:
    listed = stage_of(profile)
    assert sorted(listed) == sorted(recipes), "a recipe listed twice, missing, or not listed"
    tree = LFS_RECIPES.parent.parent
    for path in listed:
        assert (tree / path).is_file(), path


def test_every_chapter_5_to_8_package_is_present_with_the_book_version(
    profile: dict, recipes: dict[str, Recipe]
) -> None:
    where = stage_of(profile)
    # Which recipe the book's package is, per chapter: the temporary builds carry a suffix.
    naming = {
        "5": {
            "binutils": "binutils-pass1",
            "gcc": "gcc-pass1",
            "linux": "linux-headers",
            "glibc": "glibc-tmp",
            "libstdc++": "libstdcxx-tmp",
        },
        "6": {"binutils": "binutils-pass2", "gcc": "gcc-pass2"},
    }
    stage = {"5": "stage0", "6": "stage1", "7": "stage1", "8": "base"}
    found = {(r.package.name, where[path]): r for path, r in recipes.items()}
    for chapter, packages in BOOK.items():
        for package, version in packages:
            name = naming.get(chapter, {}).get(package, package if chapter == "8" else f"{package}-tmp")
            recipe = found.get((name, stage[chapter]))
            assert recipe is not None, f"chapter {chapter}: {package} ({name}) missing from {stage[chapter]}"
            assert recipe.package.version == version, (name, recipe.package.version)
            assert recipe.deviations is not None
            assert recipe.deviations.lfs_section.split(".")[0] == chapter, name
            assert "/lfs/view/12.4/" in recipe.deviations.lfs_url, name
    # the kernel the final system boots (chapter 10) is there too
    assert found[("linux", "base")].package.version == "6.16.1"


def test_the_toolchain_sources_carry_the_book_checksums(recipes: dict[str, Recipe]) -> None:
    seen: Counter[str] = Counter()
    for recipe in recipes.values():
        expanded = recipe.expand(MacroContext(target="x86_64-lfs-linux-gnu", sysroot="/mnt/lfs"))
        if expanded.source.archive is None:  # a local tree (lfs-layout, lfs-essential-files)
            continue
        sources = [(expanded.source.archive, recipe.source.checksum)]
        sources += [(a.url, a.checksum) for a in expanded.source.additional]
        for url, checksum in sources:
            file = url.rsplit("/", 1)[-1]
            if file in TOOLCHAIN_MD5:
                assert str(checksum) == f"md5:{TOOLCHAIN_MD5[file]}", (recipe.package.name, file)
                seen[file] += 1
    # binutils: 2 passes + final; gcc: 2 passes + libstdc++ + final; glibc: temporary + final;
    # linux: the API headers + the kernel.
    assert seen == {
        "binutils-2.45.tar.xz": 3,
        "gcc-15.2.0.tar.xz": 4,
        "glibc-2.42.tar.xz": 2,
        "linux-6.16.1.tar.xz": 2,
    }


def test_the_same_file_has_the_same_checksum_everywhere(recipes: dict[str, Recipe]) -> None:
    pins: dict[str, set[str]] = {}
    for recipe in recipes.values():
        expanded = recipe.expand(MacroContext())
        entries = [(expanded.source.archive, recipe.source.checksum)] if expanded.source.archive else []
        entries += [(a.url, a.checksum) for a in expanded.source.additional]
        entries += [(p.file, p.checksum) for p in expanded.patches]
        for url, checksum in entries:
            pins.setdefault(url.rsplit("/", 1)[-1], set()).add(str(checksum))
    assert {f: c for f, c in pins.items() if len(c) > 1} == {}


def test_build_modes_follow_the_book(profile: dict, recipes: dict[str, Recipe]) -> None:
    where = stage_of(profile)
    for path, recipe in recipes.items():
        chapter = recipe.deviations.lfs_section.split(".")[0]
        if chapter in ("4", "5", "6"):  # outside the chroot
            assert recipe.cross is not None and not recipe.build.chroot, path
            assert recipe.cross.stage == {"stage0": "stage0", "stage1": "stage1"}[where[path]], path
        else:
            assert recipe.build.chroot and recipe.cross is None, path


def test_dependencies_name_tree_packages_and_form_an_acyclic_graph(
    profile: dict, recipes: dict[str, Recipe], by_name: dict[str, Recipe]
) -> None:
    where = stage_of(profile)
    order = [s["name"] for s in profile["stages"]]
    stage_by_name = {r.package.name: where[path] for path, r in recipes.items()}
    broken = {tuple(edge) for s in profile["stages"] for edge in s.get("break_edges", [])}
    assert broken, "the toolchain cycle is declared"
    graph: dict[str, set[str]] = {}
    for name, recipe in by_name.items():
        deps = set(recipe.build.requires) | set(recipe.build.makedepends)
        unknown = deps - by_name.keys()
        assert not unknown, f"{name} depends on {sorted(unknown)}, which no recipe provides"
        for dep in deps:
            # a dependency is built in the same stage or an earlier one
            assert order.index(stage_by_name[dep]) <= order.index(stage_by_name[name]), (name, dep)
        graph[name] = {d for d in deps if (name, d) not in broken}
    for edge in broken:
        assert edge[1] in by_name[edge[0]].build.requires + by_name[edge[0]].build.makedepends, edge
    with pytest.raises(CycleError):
        TopologicalSorter(
            {n: set(r.build.requires) | set(r.build.makedepends) for n, r in by_name.items()}
        ).prepare()
    build_order = list(TopologicalSorter(graph).static_order())
    # the cross toolchain comes first, the final compiler after the C library it links against
    assert (
        build_order.index("binutils-pass1") < build_order.index("gcc-pass1") < build_order.index("glibc-tmp")
    )
    assert build_order.index("glibc") < build_order.index("gcc")
    edges = sum(len(d) for d in graph.values())
    assert edges >= len(graph), "a real dependency graph, not a flat list"


def test_bootstrap_dry_run_lists_the_book_and_reports_every_source_missing(
    cli, recipes: dict[str, Recipe], tmp_path: Path
) -> None:
    args = ["bootstrap", "dry-run", "--profile", "lfs", "--target", "x86_64", "--work", tmp_path / "none"]
    args += ["--source-cache", tmp_path / "cache", "--json"]
    result = cli(*args)
    assert result.code == 1, result.err  # no mirror: every source is missing
    report = json.loads(result.out)
    assert report["ok"] is False
    assert [p for p in report["problems"] if p["severity"] == "error"] == []
    assert [s["name"] for s in report["stages"]] == STAGE_ORDER
    packages = [p for s in report["stages"] for p in s["packages"]]
    listed = {(p["stage"], p["name"]): p for p in packages}
    assert {name for _stage, name in listed} == {r.package.name for r in recipes.values()}
    sources = [src for p in packages for src in p["sources"]]
    assert {src["state"] for src in sources} == {"missing"}
    assert report["missing"] == len({src["checksum"] for src in sources})
    for stage, name, version, md5 in [
        ("stage0", "binutils-pass1", "2.45", TOOLCHAIN_MD5["binutils-2.45.tar.xz"]),
        ("stage0", "gcc-pass1", "15.2.0", TOOLCHAIN_MD5["gcc-15.2.0.tar.xz"]),
        ("stage0", "glibc-tmp", "2.42", TOOLCHAIN_MD5["glibc-2.42.tar.xz"]),
        ("stage0", "linux-headers", "6.16.1", TOOLCHAIN_MD5["linux-6.16.1.tar.xz"]),
        ("base", "binutils", "2.45", TOOLCHAIN_MD5["binutils-2.45.tar.xz"]),
        ("base", "gcc", "15.2.0", TOOLCHAIN_MD5["gcc-15.2.0.tar.xz"]),
        ("base", "glibc", "2.42", TOOLCHAIN_MD5["glibc-2.42.tar.xz"]),
        ("base", "linux", "6.16.1", TOOLCHAIN_MD5["linux-6.16.1.tar.xz"]),
    ]:
        package = listed[(stage, name)]
        assert package["version"] == version
        assert package["sources"][0]["checksum"] == f"md5:{md5}"


BASH_ONLY = re.compile(r"\b(pushd|popd)\b|(?<!\$)\{[^{}\s]*,[^{}\s]*\}")


def test_steps_outside_the_chroot_are_posix_sh(recipes: dict[str, Recipe]) -> None:
    """Chapters 4-6 run with the seed's /bin/sh (dash on Debian), not with bash."""
    dash = shutil.which("dash")
    checked = 0
    for path, recipe in recipes.items():
        if recipe.build.chroot:
            continue
        expanded = recipe.expand(MacroContext(target="x86_64-lfs-linux-gnu", sysroot="/mnt/lfs"))
        scripts = [script for _step, script in expanded.build.steps()]
        if expanded.build.sanity_check is not None:
            scripts.append(expanded.build.sanity_check.script)
        for script in scripts:
            assert not BASH_ONLY.search(script), (path, BASH_ONLY.search(script).group(0))
            if dash:
                syntax = subprocess.run([dash, "-n", "-c", script], capture_output=True, text=True)
                assert syntax.returncode == 0, (path, syntax.stderr)
            checked += 1
    assert checked > 50
