from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conary.errors import InputError
from conary.fetch import (
    Checksum,
    ChecksumMismatchError,
    DebianSourceProvider,
    Fetcher,
    HttpMirror,
    SourceCache,
    default_cache_dir,
    digest_file,
)
from helpers_fetch import serve, sha256_of

DATA = b"conary source bytes\n" * 1000


def entries(root: Path) -> list[str]:
    """Every file under the cache except lock files, relative to it."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts
    )


def test_checksum_parse_normalises_and_rejects() -> None:
    cs = Checksum.parse("SHA256:" + "AB" * 32)
    assert cs == Checksum("sha256", "ab" * 32)
    assert str(cs) == "sha256:" + "ab" * 32
    assert Checksum.parse(cs) is cs
    assert Checksum.parse("md5:" + "0" * 32).algo == "md5"
    assert Checksum.parse("sha512:" + "f" * 128).algo == "sha512"
    for bad in ("ab" * 32, "sha1:" + "0" * 40, "sha256:" + "0" * 63, "sha256:" + "g" * 64):
        with pytest.raises(InputError):
            Checksum.parse(bad)


def test_add_file_verifies_and_places_by_checksum(tmp_path: Path) -> None:
    src = tmp_path / "hello.tar.gz"
    src.write_bytes(DATA)
    cache = SourceCache(tmp_path / "cache")
    checksum = sha256_of(DATA)
    assert cache.path_for(checksum) is None
    path = cache.add_file(src, checksum)
    assert path == tmp_path / "cache" / "sha256" / hashlib.sha256(DATA).hexdigest()
    assert path.read_bytes() == DATA
    assert cache.path_for(checksum) == path
    assert checksum in cache
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("algo", ["md5", "sha512"])
def test_other_algorithms_verify(tmp_path: Path, algo: str) -> None:
    src = tmp_path / "f"
    src.write_bytes(DATA)
    cache = SourceCache(tmp_path / "cache")
    good = f"{algo}:{hashlib.new(algo, DATA).hexdigest()}"
    assert cache.add_file(src, good).read_bytes() == DATA
    assert digest_file(src, algo) == Checksum.parse(good)
    bad = f"{algo}:{hashlib.new(algo, b'other').hexdigest()}"
    with pytest.raises(ChecksumMismatchError):
        cache.add_file(src, bad)


def test_mismatch_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "evil.tar.gz"
    src.write_bytes(DATA + b"tampered")
    cache = SourceCache(tmp_path / "cache")
    expected = sha256_of(DATA)
    with pytest.raises(ChecksumMismatchError) as info:
        cache.add_file(src, expected)
    err = info.value
    assert err.origin == str(src)
    assert err.expected == expected
    assert err.actual == sha256_of(DATA + b"tampered")
    assert str(src) in err.render() and expected in err.render() and err.actual in err.render()
    assert cache.path_for(expected) is None
    assert entries(cache.root) == []


def test_interrupted_stream_never_appears(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache")

    def broken() -> object:
        yield DATA[:1000]
        yield DATA[1000:2000]
        raise ConnectionResetError("peer went away")

    with pytest.raises(ConnectionResetError):
        cache.add_stream(broken(), sha256_of(DATA), origin="test")
    assert cache.path_for(sha256_of(DATA)) is None
    assert entries(cache.root) == []


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("CONARY_SOURCE_CACHE", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "conary" / "sources"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "conary" / "sources"
    monkeypatch.setenv("CONARY_SOURCE_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"


def test_concurrent_fetches_in_threads_download_once(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache")
    checksum = sha256_of(DATA)
    with serve() as server:
        server.add("sha256/" + hashlib.sha256(DATA).hexdigest(), DATA)
        server.delay = 0.2
        fetcher = Fetcher(
            cache, [HttpMirror(server.url)], progress=False, debian=DebianSourceProvider(tmp_path / "apt")
        )
        results: list[Path] = []
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                results.append(fetcher.fetch("https://unused.invalid/src.tar.gz", checksum))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(set(results)) == 1 and results[0].read_bytes() == DATA
        assert server.count("sha256/" + hashlib.sha256(DATA).hexdigest()) == 1
    assert entries(cache.root) == ["sha256/" + hashlib.sha256(DATA).hexdigest()]


def test_concurrent_fetches_in_processes_download_once(tmp_path: Path) -> None:
    checksum = sha256_of(DATA)
    script = (
        "import sys; from pathlib import Path\n"
        "from conary.fetch import Fetcher, SourceCache, HttpMirror, DebianSourceProvider\n"
        "f = Fetcher(SourceCache(sys.argv[1]), [HttpMirror(sys.argv[2])], progress=False,\n"
        "            debian=DebianSourceProvider(Path(sys.argv[1]) / 'apt'))\n"
        "print(f.fetch('https://unused.invalid/src.tar.gz', sys.argv[3]))\n"
    )
    with serve() as server:
        server.add("src.tar.gz", DATA)
        server.delay = 0.3
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path / "cache"), server.url, checksum],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ),
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, outputs
        assert {out.strip() for out, _ in outputs} == {
            str(tmp_path / "cache" / "sha256" / hashlib.sha256(DATA).hexdigest())
        }
        assert server.count("src.tar.gz") == 1
    assert entries(tmp_path / "cache") == ["sha256/" + hashlib.sha256(DATA).hexdigest()]
