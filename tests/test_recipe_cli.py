"""`conary recipe check`, `conary recipe show` and `conary new` through the real CLI entry point."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conary.distro_tree import tree_dir

DATA = Path(__file__).parent / "data" / "recipes"
VALID = DATA / "valid"
INVALID = DATA / "invalid"
LINE = re.compile(r"^(?P<path>[^:]+): (?P<severity>error|warning): (?P<where>[^:]+): (?P<message>.+)$")


def test_check_valid_directory_passes(cli) -> None:
    r = cli("recipe", "check", VALID)
    assert r.code == 0, r.out + r.err
    *lines, summary = r.out.splitlines()
    n = len(list(VALID.rglob("*.toml")))
    assert summary == f"{n} recipes, 0 errors, {len(lines)} warnings"
    assert all(LINE.match(line) and ": warning: " in line for line in lines)


def test_check_invalid_directory_fails_with_one_line_per_problem(cli) -> None:
    r = cli("recipe", "check", INVALID)
    assert r.code == 1
    *lines, summary = r.out.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    errors = sum(": error: " in line for line in lines)
    warnings = sum(": warning: " in line for line in lines)
    n = len(list(INVALID.glob("*.toml")))
    assert summary == f"{n} recipes, {errors} errors, {warnings} warnings"
    assert (
        f"{INVALID / 'unknown-key.toml'}: error: build.configur: unknown key 'configur' "
        "(did you mean 'configure'?)"
    ) in lines
    assert (
        f"{INVALID / 'patch-strip.toml'}: error: patches.files[0].strip: strip must be 0 or more, got -1"
        in lines
    )
    assert "Traceback" not in r.err


def test_check_mixed_files_and_json(cli, tmp_path: Path) -> None:
    (tmp_path / "versions.toml").write_text('[toolchain]\ngcc = "15.2.0"\n')
    shutil.copy(VALID / "zlib.toml", tmp_path)
    r = cli("recipe", "check", "--json", tmp_path, INVALID / "jobs-zero.toml")
    assert r.code == 1
    report = json.loads(r.out)
    assert report["recipes"] == 2 and report["errors"] == 1 and report["warnings"] == 0
    assert report["skipped"] == [str(tmp_path / "versions.toml")]
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path[str(tmp_path / "zlib.toml")]["ok"] is True
    bad = by_path[str(INVALID / "jobs-zero.toml")]
    assert bad["problems"] == [
        {
            "path": str(INVALID / "jobs-zero.toml"),
            "severity": "error",
            "key_path": "build.jobs",
            "message": "jobs must be 1 or more, got 0",
            "line": None,
            "column": None,
        }
    ]


def test_check_without_paths_is_a_usage_error(cli) -> None:
    r = cli("recipe", "check")
    assert r.code == 2 and r.err.startswith("conary: error:")


def test_show_expands_macros(cli) -> None:
    r = cli("recipe", "show", VALID / "gcc-pass1.toml", "--target", "x86_64-lfs-linux-gnu", "--jobs", "3")
    assert r.code == 0, r.err
    assert r.out.startswith(f"gcc-pass1 15.2.0-1  ({VALID / 'gcc-pass1.toml'})")
    assert "  archive: https://ftp.gnu.org/gnu/gcc/gcc-15.2.0/gcc-15.2.0.tar.xz" in r.out
    assert "  additional: https://ftp.gnu.org/gnu/gmp/gmp-6.3.0.tar.xz -> gmp" in r.out
    assert "    |     --target=x86_64-lfs-linux-gnu       \\" in r.out
    assert "    | make -j3" in r.out
    assert "[cross]" in r.out and "  stage: stage0" in r.out
    assert "%(" not in r.out


def test_show_json_is_the_full_expanded_model(cli) -> None:
    r = cli("recipe", "show", "--json", VALID / "glibc.toml", "--destdir", "/stage", "--sysroot", "/lfs")
    assert r.code == 0
    data = json.loads(r.out)
    assert data["expanded"] is True
    assert data["package"]["name"] == "glibc" and data["package"]["release"] == "1"
    assert data["source"]["checksum"].startswith("sha256:")
    assert data["patches"][0] == {
        "file": "glibc-2.42-fhs-1.patch",
        "checksum": data["patches"][0]["checksum"],
        "strip": 1,
    }
    assert data["build"]["install"] == "make DESTDIR=/stage/lfs install"
    assert data["cross"]["stage"] == "stage0"
    assert data["deviations"]["changes"][0]["flag"] == "--build"
    assert len(data["text_sha256"]) == 64 and "raw_text" not in data


def test_show_raw_keeps_macros(cli) -> None:
    r = cli("recipe", "show", "--raw", VALID / "hello.recipe.toml")
    assert r.code == 0 and "%(version)s" in r.out


def test_show_invalid_recipe_is_one_line_exit_2(cli) -> None:
    r = cli("recipe", "show", INVALID / "macro-cycle.toml")
    assert r.code == 2
    assert r.err == (
        f"conary: error: {INVALID / 'macro-cycle.toml'}: variables.a: macro cycle: a -> b -> a "
        f"(hint: run 'conary recipe check {INVALID / 'macro-cycle.toml'}' to list every problem)\n"
    )


def test_new_writes_a_scaffold_that_passes_check(cli, tmp_path: Path) -> None:
    r = cli("new", "hello", "--output", tmp_path)
    assert r.code == 0, r.err
    target = tmp_path / "hello.recipe.toml"
    assert r.out.strip() == str(target)
    text = target.read_text()
    assert text.count("\n#") > 10  # commented
    check = cli("recipe", "check", target)
    assert check.code == 0, check.out
    assert check.out.splitlines()[-1] == "1 recipes, 0 errors, 1 warnings"
    assert "placeholder checksum" in check.out
    show = cli("recipe", "show", target)
    assert show.code == 0 and "https://example.org/releases/hello-1.0.tar.gz" in show.out


def test_new_never_overwrites_without_force(cli, tmp_path: Path) -> None:
    target = tmp_path / "zlib.recipe.toml"
    target.write_text("mine")
    r = cli("new", "zlib", "-o", tmp_path)
    assert r.code == 2 and "already exists" in r.err and "--force" in r.err
    assert target.read_text() == "mine"
    forced = cli("new", "zlib", "-o", tmp_path, "--force")
    assert forced.code == 0 and 'name = "zlib"' in target.read_text()


def test_new_rejects_a_bad_name(cli, tmp_path: Path) -> None:
    r = cli("new", "no good", "-o", tmp_path)
    assert r.code == 2 and "invalid package name" in r.err
    assert list(tmp_path.iterdir()) == []


def test_repository_recipes_pass_check(cli) -> None:
    recipes = tree_dir("recipes")
    r = cli("recipe", "check", recipes)
    assert r.code == 0, r.out + r.err
    assert "Traceback" not in r.err


def test_show_human_form_has_every_section(cli) -> None:
    r = cli("recipe", "show", VALID / "glibc.toml", "--target", "x86_64-lfs-linux-gnu", "--sysroot", "/lfs")
    assert r.code == 0
    for header in ("[source]", "[patches]", "[build]", "[cross]", "[deviations]"):
        assert f"\n{header}\n" in r.out
    assert "  glibc-2.42-fhs-1.patch (-p1, md5:" in r.out
    assert "    | make DESTDIR=/destdir/lfs install" in r.out
    assert "  sanity_check:\n    | echo 'int main(){}' | x86_64-lfs-linux-gnu-gcc -xc - -o a.out" in r.out
    assert "    conary: --build=%(build)s" in r.out  # [deviations] are notes, kept as written
