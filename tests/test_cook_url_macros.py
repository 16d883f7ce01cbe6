"""Recipes written the Conary way put macros in their URLs; a cook fetches the expanded names."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers_cook import TINYPROJ, make_tarball, sha256

UPSTREAM = "https://ftp.gnu.org/gnu/%(name)s"
GREETING_PATCH = (
    "--- a/libtiny.c\n+++ b/libtiny.c\n@@ -4,6 +4,6 @@\n const char *tiny_greeting(void)\n {\n"
    "     static char buf[64];\n"
    '-    snprintf(buf, sizeof buf, "tiny %s says hello (%s)", TINY_VERSION, __FILE__);\n'
    '+    snprintf(buf, sizeof buf, "tiny %s says hello, patched (%s)", TINY_VERSION, __FILE__);\n'
    "     return buf;\n }\n"
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("CONARY_SOURCE_CACHE", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return tmp_path


def _upstream_mirror(env: Path) -> Path:
    """A directory mirror that holds upstream file names only (no checksum layout)."""
    mirror = env / "mirror"
    mirror.mkdir()
    make_tarball(TINYPROJ, mirror / "tinyproj-1.0.tar.gz", "tinyproj-1.0")
    extra = env / "extra-src"
    extra.mkdir()
    (extra / "data.txt").write_text("from the additional archive\n")
    make_tarball(extra, mirror / "tinyproj-data-1.0.tar.gz", "tinyproj-data-1.0")
    (mirror / "tinyproj-1.0-greeting.patch").write_text(GREETING_PATCH)
    return mirror


def _conary_recipe(env: Path, mirror: Path) -> Path:
    """A Conary-format recipe: every URL names its file through %(name)s and %(version)s, and there
    is no `debian` field."""
    recipe = env / "tinyproj.recipe.toml"
    recipe.write_text(
        f"""\
[package]
name = "tinyproj"
version = "1.0"
summary = "A test package"
license = "MIT"

[source]
archive = "{UPSTREAM}/%(name)s-%(version)s.tar.gz"
checksum = "{sha256(mirror / "tinyproj-1.0.tar.gz")}"

[[source.additional]]
url = "{UPSTREAM}/%(name)s-data-%(version)s.tar.gz"
checksum = "{sha256(mirror / "tinyproj-data-1.0.tar.gz")}"
extract_to = "vendor/%(name)s"

[build]
configure = "./configure --prefix=/usr"
make = "make"
install = '''
make install
mkdir -p $DESTDIR/usr/share/tinyproj
cp vendor/tinyproj/data.txt $DESTDIR/usr/share/tinyproj/
'''

[patches]
files = [{{ file = "{UPSTREAM}/%(name)s-%(version)s-greeting.patch", checksum = "{
            sha256(mirror / "tinyproj-1.0-greeting.patch")
        }", strip = 1 }}]
"""
    )
    return recipe


def test_macros_in_urls_are_expanded_before_fetching_from_a_mirror_of_upstream_names(cli, env: Path) -> None:
    from conary.ccs import open_package

    mirror = _upstream_mirror(env)
    recipe = _conary_recipe(env, mirror)
    packages = []
    for run in ("one", "two"):
        # Each cook has its own empty source cache, so both fetch from the mirror by file name.
        r = cli("cook", "--offline", "--mirror", mirror, "--source-cache", env / f"cache-{run}",
                "--output", env / run, recipe)  # fmt: skip
        assert r.code == 0, r.err
        (package,) = (env / run).glob("*.ccs")
        packages.append(package)
    assert packages[0].read_bytes() == packages[1].read_bytes()

    pkg = open_package(packages[0])
    assert [s["url"] for s in pkg.manifest.provenance["sources"]] == [
        "https://ftp.gnu.org/gnu/tinyproj/tinyproj-1.0.tar.gz",
        "https://ftp.gnu.org/gnu/tinyproj/tinyproj-data-1.0.tar.gz",
    ]
    pkg.extract(env / "root")
    assert b"says hello, patched" in (env / "root/usr/lib/libtiny.so.1.0").read_bytes()
    assert (env / "root/usr/share/tinyproj/data.txt").read_text() == "from the additional archive\n"


def test_a_missing_source_is_reported_by_its_expanded_name(cli, env: Path) -> None:
    mirror = _upstream_mirror(env)
    recipe = _conary_recipe(env, mirror)
    (mirror / "tinyproj-1.0.tar.gz").unlink()
    r = cli("cook", "--offline", "--mirror", mirror, "--source-cache", env / "cache", "--output", env / "out",
            recipe)  # fmt: skip
    assert r.code != 0
    assert "%(" not in r.err
    error = r.err.strip().splitlines()[-1]  # after the step lines a cook prints without a terminal
    assert error.startswith("conary: error: tinyproj-1.0.tar.gz: sha256:")
    assert f"mirror {mirror} (not found)" in error
    assert "https://ftp.gnu.org/gnu/tinyproj/tinyproj-1.0.tar.gz (not tried: offline)" in error


def test_fetch_only_lists_expanded_urls(cli, env: Path) -> None:
    mirror = _upstream_mirror(env)
    recipe = _conary_recipe(env, mirror)
    r = cli("cook", "--fetch-only", "--offline", "--mirror", mirror, "--source-cache", env / "cache", recipe)
    assert r.code == 0, r.err
    assert "%(" not in r.out
    assert "https://ftp.gnu.org/gnu/tinyproj/tinyproj-1.0-greeting.patch" in r.out


def test_debian_names_of_additional_sources_reach_the_fetcher(env: Path) -> None:
    """`debian = ...` works in [[source.additional]] entries too, as docs/sources.md says."""
    from conary.cook import source_items
    from conary.recipe import load_recipe

    mirror = _upstream_mirror(env)
    recipe = _conary_recipe(env, mirror)
    text = recipe.read_text().replace(
        'extract_to = "vendor/%(name)s"', 'extract_to = "vendor/%(name)s"\ndebian = "tinydata"'
    )
    recipe.write_text(text)
    items = source_items(load_recipe(recipe))
    assert [(key, debian) for key, _url, _sum, debian in items] == [
        ("source.archive", None),
        ("source.additional[0]", "tinydata"),
        ("patches.files[0]", None),
    ]
