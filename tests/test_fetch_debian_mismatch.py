"""What the Debian provider says when the archive's bytes are not the pinned ones: a checksum typo,
an outdated pin, a pinned Debian version that is gone, and a file the index lists but the pool lacks.

The archive is a local one on 127.0.0.1 (tests/helpers_debian.py) read by the real apt-get."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary.fetch import ChecksumMismatchError, DebianSourceProvider, Fetcher, FetchError, SourceCache
from helpers_debian import DebianArchive, orig_tarball
from helpers_fetch import closed_port, serve, sha256_of

WRONG = "sha256:" + "0" * 64


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[DebianArchive]:
    with serve() as server:
        found = DebianArchive(server, tmp_path)
        found.use_suites("bookworm")
        yield found


def _fetcher(archive: DebianArchive, tmp_path: Path) -> Fetcher:
    provider = DebianSourceProvider(tmp_path / "apt", etc_apt=archive.etc_apt)
    return Fetcher(SourceCache(tmp_path / "cache"), [], progress=False, debian=provider)


def _dead_url(name: str) -> str:
    return f"http://127.0.0.1:{closed_port()}/{name}"


def _cached_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_a_checksum_typo_names_debians_file_version_and_both_digests(archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.10-3")
    actual = sha256_of(orig_tarball("hello", "2.10"))
    with pytest.raises(ChecksumMismatchError) as info:
        _fetcher(archive, tmp_path).fetch(
            _dead_url("hello-2.10.tar.gz"), WRONG, debian="hello", version="2.10"
        )
    line = info.value.render()
    assert line.startswith(
        f"hello-2.10.tar.gz: checksum mismatch: Debian's hello_2.10.orig.tar.gz (hello 2.10-3) is {actual}, "
        f"the recipe pins {WRONG}"
    )
    assert "conary recipe bump RECIPE --from-debian" in line
    assert _cached_files(tmp_path / "cache") == []


def test_an_outdated_pin_names_the_version_debian_ships_now(archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.12.1-1")
    old = sha256_of(orig_tarball("hello", "2.10"))
    with pytest.raises(ChecksumMismatchError) as info:
        _fetcher(archive, tmp_path).fetch(_dead_url("hello-2.10.tar.gz"), old, debian="hello", version="2.10")
    line = info.value.render()
    new = sha256_of(orig_tarball("hello", "2.12.1"))
    assert f"the recipe pins hello 2.10 ({old}), but Debian ships hello 2.12.1-1 now" in line
    assert f"hello_2.12.1.orig.tar.gz is {new}" in line
    assert "moves the recipe to 2.12.1" in line


def test_a_pinned_debian_version_that_is_gone_names_the_ones_shipped(archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.12.1-1")
    with pytest.raises(FetchError) as info:
        _fetcher(archive, tmp_path).fetch(_dead_url("hello-2.10.tar.gz"), WRONG, debian="hello=2.10-3")
    assert "debian source hello=2.10-3 (Debian does not ship hello 2.10-3 (any more): it ships 2.12.1-1)" in (
        info.value.render()
    )


def test_a_file_the_index_lists_but_the_pool_lacks_is_said_so(archive, tmp_path: Path) -> None:
    archive.add("bookworm", "hello", "2.10-3", in_pool=False)
    with pytest.raises(FetchError) as info:
        _fetcher(archive, tmp_path).fetch(_dead_url("hello-2.10.tar.gz"), WRONG, debian="hello")
    line = info.value.render()
    lacks = r"Debian's index lists hello 2\.10-3, but its pool lacks hello_2\.10\.orig\.tar\.gz \(404 [^)]*\)"
    assert re.search(lacks, line), line
    assert "not found" in line  # the overall verdict: no place had the bytes


@pytest.mark.network
def test_cook_with_a_wrong_checksum_reads_as_a_mismatch_not_as_not_found(
    cli, tmp_path: Path, shared_source_cache: Path
) -> None:
    """Against Debian's own archive: the recipe in the tree with one digit of its checksum changed."""
    tree = Path(__file__).resolve().parent.parent / "recipes" / "hello.recipe.toml"
    text = tree.read_text()
    pinned = re.search(r'checksum = "(sha256:[0-9a-f]{64})"', text).group(1)  # type: ignore[union-attr]
    wrong = pinned[:-1] + ("0" if pinned[-1] != "0" else "1")
    url = re.search(r'archive = "([^"]+)"', text).group(1)  # type: ignore[union-attr]
    recipe = tmp_path / "hello.recipe.toml"
    recipe.write_text(text.replace(pinned, wrong).replace(url, _dead_url(url.rsplit("/", 1)[1])))
    r = cli("cook", "--source-cache", shared_source_cache, "--output", tmp_path / "out", recipe)
    assert r.code == 1
    lines = r.err.strip().splitlines()
    line = lines[-1]
    assert line.startswith("conary: error: ") and all(x.startswith("cook: ") for x in lines[:-1])
    assert re.search(
        r"checksum mismatch: (Debian's hello_\S+\.orig\.tar\.gz \(hello \S+\) is sha256:[0-9a-f]{64}, "
        rf"the recipe pins {wrong}|the recipe pins hello \S+ \({wrong}\), but Debian ships hello \S+ now)",
        line,
    ), line
    assert "not found" not in line


def test_relative_cache_and_state_dirs_fetch_from_debian(
    archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--source-cache cache` given relative: apt runs in its state dir, so a relative path there
    would name a dir inside itself (cache/.debian-apt/cache/.debian-apt/...)."""
    archive.add("bookworm", "hello", "2.10-3")
    monkeypatch.chdir(tmp_path)
    provider = DebianSourceProvider(Path("cache") / ".debian-apt", etc_apt=archive.etc_apt)
    fetcher = Fetcher(SourceCache("cache"), [], progress=False, debian=provider)
    digest = sha256_of(orig_tarball("hello", "2.10"))
    found = fetcher.fetch(_dead_url("hello-2.10.tar.gz"), digest, debian="hello", version="2.10")
    assert found.is_absolute() and found.parent.parent == tmp_path / "cache"
    state = tmp_path / "cache" / ".debian-apt"
    assert [p for p in (tmp_path / "cache").rglob(".debian-apt")] == [state]
