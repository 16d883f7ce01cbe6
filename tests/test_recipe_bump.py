"""`conary recipe bump --from-debian`: version, checksum and URL follow what Debian ships, and
nothing else in the file changes. The archive is a local one on 127.0.0.1 read by the real apt-get;
one network test runs the same against Debian's own archive."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary.cook import bump
from conary.errors import InputError
from conary.fetch import DebianSourceProvider, SourceCache
from conary.recipe import load_recipe
from conary.recipe.edit import get_string, set_string
from helpers_debian import DebianArchive, orig_tarball
from helpers_fetch import serve, sha256_of

HELLO_RECIPE = """\
# GNU Hello, as Debian ships it.
[package]
name = "hello"
version = "2.10"   # the upstream version
summary = "GNU Hello"

[source]
# Debian ships upstream's tarball byte for byte.
archive = "https://ftp.gnu.org/gnu/hello/hello-2.10.tar.gz"
checksum = "{checksum}"
debian = "hello"

[build]
configure = './configure --prefix=/usr'
install = '''
# not a key: version = "2.10"
[package]
make install DESTDIR=%(destdir)s
'''
"""


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DebianArchive]:
    """A local archive with bookworm and trixie; bump's provider reads it instead of /etc/apt's."""
    with serve() as server:
        found = DebianArchive(server, tmp_path)
        found.use_suites("bookworm", "bookworm-updates")

        def provider(cache: SourceCache, suite: str | None) -> DebianSourceProvider:
            state = tmp_path / "apt" / (suite or "default")
            return DebianSourceProvider(state, etc_apt=found.etc_apt, suite=suite)

        monkeypatch.setattr(bump, "debian_provider", provider)
        yield found


def _hello(tmp_path: Path, text: str = HELLO_RECIPE) -> Path:
    recipe = tmp_path / "hello.recipe.toml"
    recipe.write_text(text.replace("{checksum}", sha256_of(orig_tarball("hello", "2.10"))))
    recipe.chmod(0o640)
    return recipe


def test_bump_rewrites_version_checksum_and_url_and_nothing_else(cli, archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.12.1-1")
    recipe = _hello(tmp_path)
    before = recipe.read_text()
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0, r.err
    new = sha256_of(orig_tarball("hello", "2.12.1"))
    expected = (
        before.replace('version = "2.10"   #', 'version = "2.12.1"   #')
        .replace("hello-2.10.tar.gz", "hello-2.12.1.tar.gz")
        .replace(sha256_of(orig_tarball("hello", "2.10")), new)
    )
    assert recipe.read_text() == expected  # comments, layout and the script's text are as written
    assert '# not a key: version = "2.10"' in expected
    assert f'+checksum = "{new}"' in r.out
    assert '-version = "2.10"   # the upstream version' in r.out
    assert r.out.startswith(f"--- a/{recipe}\n+++ b/{recipe}\n")
    assert "hello 2.10 -> 2.12.1 from Debian's hello 2.12.1-1" in r.err.replace(f"{recipe}: ", "hello ")
    assert oct(recipe.stat().st_mode & 0o777) == oct(0o640)
    assert (tmp_path / "cache" / "sha256" / new.split(":")[1]).is_file()  # the next cook is offline
    assert load_recipe(recipe).package.version == "2.12.1"

    again = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert again.code == 0, again.err
    assert again.out == ""
    assert "already pins Debian's hello 2.12.1-1" in again.err
    assert recipe.read_text() == expected


def test_bump_from_another_suite_and_dry_run(cli, archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.10-3")
    archive.add("trixie", "hello", "2.12.1-1")
    recipe = _hello(tmp_path)
    before = recipe.read_text()
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0 and r.out == "" and "already pins Debian's hello 2.10-3" in r.err

    r = cli("recipe", "bump", recipe, "--from-debian", "--suite", "trixie", "--dry-run",
            "--source-cache", tmp_path / "cache")  # fmt: skip
    assert r.code == 0, r.err
    assert '+version = "2.12.1"' in r.out
    assert "not written (--dry-run)" in r.err
    assert recipe.read_text() == before

    r = cli("recipe", "bump", recipe, "--from-debian", "--suite", "trixie", "--source-cache", tmp_path / "c")
    assert r.code == 0, r.err
    assert load_recipe(recipe).package.version == "2.12.1"


def test_bump_of_a_pool_url_with_an_exact_debian_pin_and_an_epoch(cli, archive, tmp_path: Path) -> None:
    archive.add("bookworm", "zlib", "1:1.3.dfsg-3")
    old = sha256_of(orig_tarball("zlib", "1.2.13.dfsg"))
    recipe = tmp_path / "zlib.recipe.toml"
    recipe.write_text(
        '[package]\nname = "zlib"\nversion = "1.2.13"\n\n[source]\n'
        "# Debian repacks zlib, so this pins Debian's bytes.\n"
        "archive = 'http://deb.debian.org/debian/pool/main/z/zlib/zlib_1.2.13.dfsg.orig.tar.gz'\n"
        f'checksum = "{old}"\ndebian = "zlib=1:1.2.13.dfsg-1"\n'
    )
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0, r.err
    new = sha256_of(orig_tarball("zlib", "1.3.dfsg"))
    assert recipe.read_text() == (
        '[package]\nname = "zlib"\nversion = "1.3"\n\n[source]\n'
        "# Debian repacks zlib, so this pins Debian's bytes.\n"
        "archive = 'http://deb.debian.org/debian/pool/main/z/zlib/zlib_1.3.dfsg.orig.tar.gz'\n"
        f'checksum = "{new}"\ndebian = "zlib=1:1.3.dfsg-3"\n'
    )


def test_a_url_written_with_macros_keeps_them(cli, archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.12.1-1")
    recipe = _hello(tmp_path, HELLO_RECIPE.replace("hello-2.10.tar.gz", "hello-%(version)s.tar.gz"))
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0, r.err
    text = recipe.read_text()
    assert 'archive = "https://ftp.gnu.org/gnu/hello/hello-%(version)s.tar.gz"' in text
    assert load_recipe(recipe).expand().source.archive.endswith("/hello-2.12.1.tar.gz")


def test_a_version_the_pool_lacks_is_one_line_and_the_recipe_stays(cli, archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.12.1-1", in_pool=False)
    recipe = _hello(tmp_path)
    before = recipe.read_text()
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 1
    assert r.err.startswith(
        "conary: error: debian source hello: Debian's index lists hello 2.12.1-1, but its pool lacks "
        "hello_2.12.1.orig.tar.gz (404 "
    )
    assert len(r.err.strip().splitlines()) == 1
    assert recipe.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hello")] == []


def test_bump_needs_from_debian_and_an_unknown_package_is_one_line(cli, archive, tmp_path: Path) -> None:
    archive.add("bookworm", "zlib", "1:1.3.dfsg-3")
    recipe = _hello(tmp_path)
    r = cli("recipe", "bump", recipe)
    assert r.code == 2 and "give --from-debian" in r.err
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 1
    assert "Unable to find a source package for hello" in r.err


def test_write_refuses_a_recipe_that_changed_meanwhile(archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.12.1-1")
    recipe = _hello(tmp_path)
    plan = bump.plan_bump_from_debian(recipe, cache_dir=tmp_path / "cache")
    recipe.write_text(recipe.read_text() + "\n# edited by hand\n")
    with pytest.raises(InputError, match="changed while it was being bumped"):
        bump.write_bump(plan)
    assert recipe.read_text().endswith("# edited by hand\n")


def test_set_string_edits_one_key_of_one_table() -> None:
    text = (
        '[source]\nchecksum = "sha256:aa"  # pinned\n\n[[source.additional]]\nchecksum = "sha256:bb"\n'
        "[build]\nmake = '''\nchecksum = \"sha256:cc\"\n'''\n"
    )
    changed = set_string(text, "source", "checksum", "sha256:dd")
    assert changed == text.replace("sha256:aa", "sha256:dd")
    assert get_string(changed, "source", "checksum") == "sha256:dd"
    assert get_string(text, "build", "checksum") is None
    with pytest.raises(InputError) as info:
        set_string(text, "package", "version", "1")
    assert info.value.where == "package.version"


@pytest.mark.network
def test_bump_against_debians_archive(cli, tmp_path: Path, shared_source_cache: Path) -> None:
    """An old hello pin moves to what the machine's Debian suite ships now, whatever version that is."""
    recipe = tmp_path / "hello.recipe.toml"
    recipe.write_text(
        '[package]\nname = "hello"\nversion = "2.8"\n\n[source]\n'
        'archive = "https://ftp.gnu.org/gnu/hello/hello-2.8.tar.gz"\n'
        f'checksum = "sha256:{"1" * 64}"\ndebian = "hello"\n'
    )
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", shared_source_cache)
    assert r.code == 0, r.err
    bumped = load_recipe(recipe)
    assert bumped.package.version != "2.8"
    assert bumped.source.archive == f"https://ftp.gnu.org/gnu/hello/hello-{bumped.package.version}.tar.gz"
    cached = shared_source_cache / "sha256" / bumped.source.checksum.hexdigest
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == bumped.source.checksum.hexdigest
    assert os.stat(recipe).st_size > 0


def test_bump_reads_the_archive_as_it_is_now_not_lists_from_hours_ago(cli, archive, tmp_path: Path) -> None:
    """Lists fetched an hour ago name a version the archive has since replaced (and removed from the
    pool); bump refreshes them and moves to the current version instead of failing on the old one."""
    archive.add("bookworm", "hello", "2.10-3")
    recipe = _hello(tmp_path)
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0 and "already pins Debian's hello 2.10-3" in r.err
    archive.withdraw("bookworm", "hello")
    archive.add("bookworm", "hello", "2.12.1-1")
    stamp = tmp_path / "apt" / "default" / "state" / "updated"
    hour_ago = time.time() - 3600
    os.utime(stamp, (hour_ago, hour_ago))

    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0, r.err
    assert load_recipe(recipe).package.version == "2.12.1"


def test_a_binary_package_name_in_source_debian_finds_its_source(cli, archive, tmp_path: Path) -> None:
    """apt maps a binary package name to its source package; the tarball is named after the source."""
    archive.add("bookworm", "hello", "2.12.1-1", binary="hello-greeter")
    recipe = _hello(tmp_path, HELLO_RECIPE.replace('debian = "hello"', 'debian = "hello-greeter"'))
    r = cli("recipe", "bump", recipe, "--from-debian", "--source-cache", tmp_path / "cache")
    assert r.code == 0, r.err
    assert "from Debian's hello 2.12.1-1" in r.err
    assert str(load_recipe(recipe).source.checksum) == sha256_of(orig_tarball("hello", "2.12.1"))
