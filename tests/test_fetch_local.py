from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conary.errors import InputError
from conary.fetch import (
    ChecksumMismatchError,
    DebianSourceProvider,
    DirectoryMirror,
    Fetcher,
    FetchError,
    HttpMirror,
    SourceCache,
    configured_mirrors,
    default_mirror_config_path,
    filename_from_url,
    load_mirror_config,
    make_fetcher,
    parse_mirror,
)
from helpers_fetch import closed_port

DATA = b"local source bytes\n" * 100
HEX = hashlib.sha256(DATA).hexdigest()
CHECKSUM = "sha256:" + HEX


def fetcher_with(tmp_path: Path, mirrors: list, **kw: object) -> Fetcher:
    return Fetcher(
        SourceCache(tmp_path / "cache"),
        mirrors,
        progress=False,
        debian=DebianSourceProvider(tmp_path / "apt"),
        **kw,
    )


def dead_url(name: str = "pkg-1.0.tar.gz") -> str:
    return f"http://127.0.0.1:{closed_port()}/{name}"


def test_directory_mirror_by_checksum(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "sha256").mkdir(parents=True)
    (mirror / "sha256" / HEX).write_bytes(DATA)
    path = fetcher_with(tmp_path, [DirectoryMirror(mirror)]).fetch(dead_url(), CHECKSUM)
    assert path == tmp_path / "cache" / "sha256" / HEX
    assert path.read_bytes() == DATA


def test_directory_mirror_by_name_and_fall_through(tmp_path: Path) -> None:
    empty, named = tmp_path / "empty", tmp_path / "named"
    empty.mkdir()
    named.mkdir()
    (named / "pkg-1.0.tar.gz").write_bytes(DATA)
    fetcher = fetcher_with(tmp_path, [DirectoryMirror(empty), DirectoryMirror(named)])
    assert fetcher.fetch(dead_url(), CHECKSUM).read_bytes() == DATA


def test_directory_mirror_miss_is_listed(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FetchError) as info:
        fetcher_with(tmp_path, [DirectoryMirror(empty)]).fetch(dead_url(), CHECKSUM)
    assert f"mirror {empty} (not found)" in info.value.render()


def test_a_filled_cache_serves_as_a_mirror(tmp_path: Path) -> None:
    first = SourceCache(tmp_path / "first")
    src = tmp_path / "src"
    src.write_bytes(DATA)
    first.add_file(src, CHECKSUM)
    other = Fetcher(SourceCache(tmp_path / "second"), [parse_mirror(str(first.root))], progress=False)
    assert other.fetch(dead_url("renamed.tar.gz"), CHECKSUM).read_bytes() == DATA


def test_file_url(tmp_path: Path) -> None:
    src = tmp_path / "dir with space" / "pkg-1.0.tar.gz"
    src.parent.mkdir()
    src.write_bytes(DATA)
    url = src.as_uri()
    assert "%20" in url
    path = fetcher_with(tmp_path, []).fetch(url, CHECKSUM)
    assert path.read_bytes() == DATA


def test_recipe_relative_and_absolute_paths(tmp_path: Path) -> None:
    recipe_dir = tmp_path / "recipes"
    (recipe_dir / "patches").mkdir(parents=True)
    (recipe_dir / "patches" / "fix.patch").write_bytes(DATA)
    fetcher = fetcher_with(tmp_path, [])
    path = fetcher.fetch("patches/fix.patch", CHECKSUM, recipe_dir=recipe_dir)
    assert path.read_bytes() == DATA
    other = b"another file"
    (recipe_dir / "abs.txt").write_bytes(other)
    sha = "sha256:" + hashlib.sha256(other).hexdigest()
    assert fetcher.fetch(str(recipe_dir / "abs.txt"), sha).read_bytes() == other


def test_missing_local_file_and_local_mismatch(tmp_path: Path) -> None:
    fetcher = fetcher_with(tmp_path, [])
    with pytest.raises(FetchError) as info:
        fetcher.fetch("patches/missing.patch", CHECKSUM, recipe_dir=tmp_path)
    assert f"tried cache, {tmp_path / 'patches' / 'missing.patch'} (not found)" in info.value.render()
    (tmp_path / "changed.patch").write_bytes(b"edited by hand")
    with pytest.raises(ChecksumMismatchError) as mismatch:
        fetcher.fetch("changed.patch", CHECKSUM, recipe_dir=tmp_path)
    assert mismatch.value.origin == str(tmp_path / "changed.patch")
    assert mismatch.value.actual == "sha256:" + hashlib.sha256(b"edited by hand").hexdigest()


def test_unsupported_scheme_is_named(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        fetcher_with(tmp_path, []).fetch("ftp://ftp.example.org/pkg.tar.gz", CHECKSUM)
    assert "ftp://ftp.example.org/pkg.tar.gz (unsupported URL scheme 'ftp')" in info.value.render()


def test_filename_from_url() -> None:
    assert filename_from_url("https://ftp.gnu.org/gnu/hello/hello-2.10.tar.gz") == "hello-2.10.tar.gz"
    assert filename_from_url("https://x.org/a%20b.tar.gz?x=1#frag") == "a b.tar.gz"
    assert filename_from_url("patches/fix.patch") == "fix.patch"
    assert filename_from_url("https://x.org/evil%2F..%2Fpasswd") == ""
    assert filename_from_url("https://x.org/") == ""


def test_parse_mirror_kinds(tmp_path: Path) -> None:
    assert parse_mirror("https://m.example.org/src") == HttpMirror("https://m.example.org/src/")
    assert parse_mirror("http://127.0.0.1:8000/") == HttpMirror("http://127.0.0.1:8000/")
    assert parse_mirror("file:///srv/mirror") == DirectoryMirror(Path("/srv/mirror"))
    assert parse_mirror("/srv/mirror") == DirectoryMirror(Path("/srv/mirror"))
    assert parse_mirror("sub", base_dir=tmp_path) == DirectoryMirror(tmp_path / "sub")
    with pytest.raises(InputError):
        parse_mirror("rsync://m.example.org/src")
    with pytest.raises(InputError):
        parse_mirror("  ")


def test_mirror_config_honours_xdg_and_orders_cli_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_mirror_config_path() == tmp_path / "xdg" / "conary" / "mirrors.toml"
    assert load_mirror_config() == []  # no file: no mirrors
    config = tmp_path / "xdg" / "conary" / "mirrors.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[[mirror]]\nurl = "https://m.example.org/"\n\n[[mirror]]\nurl = "local-dir"\n')
    assert load_mirror_config() == [
        HttpMirror("https://m.example.org/"),
        DirectoryMirror(config.parent / "local-dir"),
    ]
    assert configured_mirrors(["/cli/one", "http://127.0.0.1:9/"]) == [
        DirectoryMirror(Path("/cli/one")),
        HttpMirror("http://127.0.0.1:9/"),
        HttpMirror("https://m.example.org/"),
        DirectoryMirror(config.parent / "local-dir"),
    ]
    fetcher = make_fetcher(["/cli/one"], offline=True, cache_dir=tmp_path / "c")
    assert fetcher.mirrors[0] == DirectoryMirror(Path("/cli/one")) and len(fetcher.mirrors) == 3
    assert fetcher.offline and fetcher.cache.root == tmp_path / "c"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[mirror]]\nurl = "/x"\nweight = 3\n', "unknown key 'weight'"),
        ('[[mirrors]]\nurl = "/x"\n', "unknown key 'mirrors'"),
        ("[[mirror]]\nname = 'x'\n", 'a mirror needs url = "..."'),
        ('mirror = "x"\n', "must be an array of tables"),
        ("[[mirror]\n", "invalid TOML"),
    ],
)
def test_bad_mirror_config_is_an_input_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "mirrors.toml"
    config.write_text(text)
    with pytest.raises(InputError) as info:
        load_mirror_config(config)
    assert message in info.value.render()
    assert str(config) in info.value.render()


def test_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_mirror_config(tmp_path / "nope.toml")
