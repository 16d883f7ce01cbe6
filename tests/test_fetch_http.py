from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conary.fetch import (
    ChecksumMismatchError,
    DebianSourceProvider,
    DirectoryMirror,
    Fetcher,
    FetchError,
    HttpMirror,
    SourceCache,
)
from helpers_fetch import closed_port, serve, sha256_of

DATA = b"upstream tarball bytes\n" * 4096
HEX = hashlib.sha256(DATA).hexdigest()
CHECKSUM = "sha256:" + HEX


def make_fetcher(tmp_path: Path, mirrors: list, **kw: object) -> Fetcher:
    return Fetcher(
        SourceCache(tmp_path / "cache"),
        mirrors,
        progress=kw.pop("progress", False),
        debian=DebianSourceProvider(tmp_path / "apt"),
        **kw,
    )


def cache_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "cache"
    return [p for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts] if root.exists() else []


def dead_url(name: str = "pkg-1.0.tar.gz") -> str:
    return f"http://127.0.0.1:{closed_port()}/{name}"


def test_http_mirror_by_checksum(tmp_path: Path) -> None:
    with serve() as server:
        server.add(f"sha256/{HEX}", DATA)
        path = make_fetcher(tmp_path, [HttpMirror(server.url)]).fetch(dead_url(), CHECKSUM)
        assert path.read_bytes() == DATA
        assert server.total_requests == 1


def test_http_mirror_by_file_name(tmp_path: Path) -> None:
    with serve() as server:
        server.add("pkg-1.0.tar.gz", DATA)
        path = make_fetcher(tmp_path, [HttpMirror(server.url.rstrip("/"))]).fetch(dead_url(), CHECKSUM)
        assert path.read_bytes() == DATA
        assert server.count(f"sha256/{HEX}") == 1  # asked by checksum first: 404
        assert server.count("pkg-1.0.tar.gz") == 1


def test_mirror_base_with_path_and_quoted_name(tmp_path: Path) -> None:
    with serve() as server:
        server.add("sources/pkg%201.0.tar.gz", DATA)
        fetcher = make_fetcher(tmp_path, [HttpMirror(server.url + "sources")])
        assert fetcher.fetch(dead_url("pkg%201.0.tar.gz"), CHECKSUM).read_bytes() == DATA


def test_404_falls_through_to_next_mirror_then_cache_hit(tmp_path: Path) -> None:
    with serve() as empty, serve() as full:
        full.add("pkg-1.0.tar.gz", DATA)
        fetcher = make_fetcher(tmp_path, [HttpMirror(empty.url), HttpMirror(full.url)])
        first = fetcher.fetch(dead_url(), CHECKSUM)
        assert empty.total_requests == 2
        assert first.read_bytes() == DATA
        # A second fetch is served from the cache without any request.
        assert fetcher.fetch(dead_url(), CHECKSUM) == first
        assert empty.total_requests == 2 and full.total_requests == 2


def test_url_itself_is_fetched_last(tmp_path: Path) -> None:
    with serve() as mirror, serve() as upstream:
        upstream.add("dl/pkg-1.0.tar.gz", DATA)
        fetcher = make_fetcher(tmp_path, [HttpMirror(mirror.url)])
        path = fetcher.fetch(upstream.url + "dl/pkg-1.0.tar.gz", CHECKSUM)
        assert path.read_bytes() == DATA
        assert mirror.total_requests == 2


def test_checksum_mismatch_names_url_expected_actual_and_keeps_nothing(tmp_path: Path) -> None:
    bad = DATA + b"tampered"
    with serve() as upstream:
        upstream.add("pkg-1.0.tar.gz", bad)
        url = upstream.url + "pkg-1.0.tar.gz"
        with pytest.raises(ChecksumMismatchError) as info:
            make_fetcher(tmp_path, []).fetch(url, CHECKSUM)
    err = info.value
    assert (err.origin, err.expected, err.actual) == (url, CHECKSUM, sha256_of(bad))
    line = err.render()
    assert url in line and CHECKSUM in line and sha256_of(bad) in line
    assert "\n" not in line
    assert cache_files(tmp_path) == []


def test_mismatch_at_a_mirror_falls_through_to_good_bytes(tmp_path: Path) -> None:
    with serve() as liar, serve() as honest:
        liar.add("pkg-1.0.tar.gz", b"something else")
        honest.add(f"sha256/{HEX}", DATA)
        path = make_fetcher(tmp_path, [HttpMirror(liar.url), HttpMirror(honest.url)]).fetch(
            dead_url(), CHECKSUM
        )
        assert path.read_bytes() == DATA
        assert cache_files(tmp_path) == [path]


def test_mismatch_at_mirror_is_reported_when_nothing_else_has_it(tmp_path: Path) -> None:
    with serve() as liar:
        liar.add("pkg-1.0.tar.gz", b"something else")
        url = dead_url()
        with pytest.raises(ChecksumMismatchError) as info:
            make_fetcher(tmp_path, [HttpMirror(liar.url)]).fetch(url, CHECKSUM)
    line = info.value.render()
    assert f"{liar.url}pkg-1.0.tar.gz" in line
    assert sha256_of(b"something else") in line and CHECKSUM in line
    assert url in line  # what else was tried
    assert cache_files(tmp_path) == []


def test_all_sources_fail_with_one_precise_line(tmp_path: Path) -> None:
    url = dead_url()
    port = url.split(":")[2].split("/")[0]
    with serve() as mirror:
        with pytest.raises(FetchError) as info:
            make_fetcher(tmp_path, [HttpMirror(mirror.url)]).fetch(url, CHECKSUM)
        line = info.value.render()
    assert not isinstance(info.value, ChecksumMismatchError)
    assert line.startswith(f"pkg-1.0.tar.gz: {CHECKSUM} not found: tried cache, ")
    assert f"mirror {mirror.url} (404)" in line
    assert f"http://127.0.0.1:{port}/pkg-1.0.tar.gz (unreachable: Connection refused)" in line
    assert "--mirror" in line and "--fetch-only" in line
    assert "\n" not in line
    assert cache_files(tmp_path) == []


def test_server_errors_are_retried(tmp_path: Path) -> None:
    with serve() as upstream:
        upstream.add("pkg-1.0.tar.gz", DATA)
        upstream.status["/pkg-1.0.tar.gz"] = 503
        upstream.status_times["/pkg-1.0.tar.gz"] = 2
        path = make_fetcher(tmp_path, []).fetch(upstream.url + "pkg-1.0.tar.gz", CHECKSUM)
        assert path.read_bytes() == DATA
        assert upstream.count("pkg-1.0.tar.gz") == 3


def test_transfer_breaking_off_is_retried_then_reported(tmp_path: Path) -> None:
    with serve() as upstream:
        upstream.add("pkg-1.0.tar.gz", DATA)
        upstream.truncate.add("/pkg-1.0.tar.gz")
        url = upstream.url + "pkg-1.0.tar.gz"
        with pytest.raises(FetchError) as info:
            make_fetcher(tmp_path, []).fetch(url, CHECKSUM)
        assert upstream.count("pkg-1.0.tar.gz") == 3
    line = info.value.render()
    assert f"{url} (transfer broke off" in line and "after 3 attempts" in line
    assert cache_files(tmp_path) == []


def test_offline_never_touches_the_network(tmp_path: Path) -> None:
    with serve() as mirror, serve() as upstream:
        mirror.add(f"sha256/{HEX}", DATA)
        upstream.add("pkg-1.0.tar.gz", DATA)
        fetcher = make_fetcher(tmp_path, [HttpMirror(mirror.url)], offline=True)
        with pytest.raises(FetchError) as info:
            fetcher.fetch(upstream.url + "pkg-1.0.tar.gz", CHECKSUM, debian="hello")
        assert mirror.total_requests == 0 and upstream.total_requests == 0
    line = info.value.render()
    assert f"{CHECKSUM} not found (offline)" in line
    assert f"mirror {mirror.url} (not tried: offline)" in line
    assert "debian source hello (not tried: offline)" in line
    assert f"{upstream.url}pkg-1.0.tar.gz (not tried: offline)" in line
    assert not (tmp_path / "apt").exists()  # apt never ran


def test_offline_uses_cache_and_directory_mirrors(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pkg-1.0.tar.gz").write_bytes(DATA)
    fetcher = make_fetcher(tmp_path, [DirectoryMirror(mirror)], offline=True)
    path = fetcher.fetch(dead_url(), CHECKSUM)
    assert path.read_bytes() == DATA
    (mirror / "pkg-1.0.tar.gz").unlink()
    assert fetcher.fetch(dead_url(), CHECKSUM) == path


def test_progress_bar_does_not_disturb_the_download(tmp_path: Path) -> None:
    with serve() as upstream:
        upstream.add("pkg-1.0.tar.gz", DATA)
        path = make_fetcher(tmp_path, [], progress=True).fetch(upstream.url + "pkg-1.0.tar.gz", CHECKSUM)
    assert path.read_bytes() == DATA
