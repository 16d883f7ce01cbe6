"""Seed locks offline: the file format, deb entries derived from apt sources, downloading by lock from a
mirror served on 127.0.0.1 (verified, cached, a vanished file named), and the seed fixups package."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conary.ccs import generate_keypair, open_package
from conary.debian.errors import PinnedFileGone, SeedError
from conary.debian.fixups import build_fixups_package, load_fixups
from conary.debian.lock import PinnedDeb, SeedLock, read_lock, render_lock, write_lock
from conary.debian.seed import (
    CONARY_STAGE,
    NATIVE_SEED,
    archive_uris,
    cross_packages,
    download_lock,
    lock_path,
    seed_dir,
    seed_packages,
)
from conary.errors import InputError
from conary.fetch.cache import SourceCache
from conary.fetch.debian import PrivateApt, derive_source_entries, parse_one_line_sources, retarget_suite
from helpers_fetch import serve

SOURCES = """\
Types: deb
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://vendor.example.com/apt
Suites: nodistro
Components: main
"""


def _etc_apt(tmp_path: Path, text: str = SOURCES) -> Path:
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(text)
    return etc


def _lock(debs: list[PinnedDeb]) -> SeedLock:
    return SeedLock("x86_64", "bookworm", "amd64", ("hello",), tuple(debs), "a test seed")


def _pin(name: str, data: bytes, version: str = "1.0-1") -> PinnedDeb:
    filename = f"pool/main/{name[0]}/{name}/{name}_{version}_amd64.deb"
    return PinnedDeb(
        name, version, "amd64", "bookworm", filename, len(data), hashlib.sha256(data).hexdigest()
    )


def test_deb_entries_follow_the_chosen_suite(tmp_path: Path) -> None:
    etc = _etc_apt(tmp_path)

    def entries(suite: str) -> list:
        return PrivateApt(tmp_path / suite, etc_apt=etc, kind="deb", suite=suite).entries()

    same = entries("bookworm")
    assert [(e.get("Types"), e.get("URIs"), e.get("Suites")) for e in same] == [
        ("deb", "http://deb.example.org/debian", "bookworm bookworm-updates"),
        ("deb", "http://security.example.org/debian-security", "bookworm-security"),
    ]
    assert same[0].get("Signed-By") == "/usr/share/keyrings/debian-archive-keyring.gpg"
    trixie = entries("trixie")
    assert [e.get("Suites") for e in trixie] == ["trixie trixie-updates", "trixie-security"]
    # unstable has no -updates or -security companions
    assert [e.get("Suites") for e in entries("sid")] == ["sid"]
    # without a suite, every entry is kept
    assert len(derive_source_entries(etc, "deb")) == 3
    # source entries move without their companions (the source provider's behaviour)
    assert [e.get("Suites") for e in retarget_suite(derive_source_entries(etc), "trixie")] == ["trixie"]


def test_one_line_deb_entries_keep_their_architecture_option() -> None:
    entries = parse_one_line_sources(
        "deb [arch=amd64 signed-by=/k.gpg] http://d.example/debian bookworm main\n"
        "deb-src http://d.example/debian bookworm main\n",
        "deb",
    )
    assert len(entries) == 1
    assert entries[0].get("Architectures") == "amd64" and entries[0].get("Signed-By") == "/k.gpg"
    assert retarget_suite(entries, "trixie", companions=True)[0].get("Suites") == "trixie"


def test_lock_round_trips_and_is_sorted(tmp_path: Path) -> None:
    lock = _lock([_pin("zlib1g", b"z"), _pin("hello", b"h")])
    path = write_lock(lock, tmp_path / "x86_64.lock")
    text = path.read_text()
    assert text.startswith("# Seed lock 'x86_64': Debian bookworm packages for amd64, pinned by sha256.")
    assert text.index('name = "hello"') < text.index('name = "zlib1g"')
    again = read_lock(path)
    assert again.debs == tuple(sorted(lock.debs)) and again.packages == ("hello",)
    assert render_lock(again) == render_lock(lock)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("format = 1", "format = 9"), "lock format 9 is not 1"),
        (lambda t: t.replace("size = 1\n", "size = -1\n", 1), "size must be a positive integer"),
        (lambda t: t.replace('sha256 = "', 'sha256 = "XY', 1), "sha256 must be 64 lowercase hex"),
        (lambda t: t.replace("pool/main", "../pool", 1), "unsafe filename"),
        (lambda t: t.replace('name = "zlib1g"', 'name = "hello"'), "a package is pinned twice"),
        (lambda t: t + "[[deb]\n", "unreadable seed lock"),
    ],
)
def test_bad_locks_name_the_file_and_entry(tmp_path: Path, edit, message: str) -> None:
    path = write_lock(_lock([_pin("hello", b"h"), _pin("zlib1g", b"z")]), tmp_path / "x.lock")
    path.write_text(edit(path.read_text()))
    with pytest.raises(InputError, match=message) as info:
        read_lock(path)
    assert str(path) in info.value.render()


def test_download_by_lock_verifies_and_caches(tmp_path: Path) -> None:
    files = {"hello": b"hello deb" * 1000, "zlib1g": b"zlib deb" * 500}
    lock = _lock([_pin(n, d) for n, d in files.items()])
    cache = SourceCache(tmp_path / "cache")
    with serve() as mirror:
        for deb in lock.debs:
            mirror.add("debian/" + deb.filename, files[deb.name])
        base = mirror.url + "debian"
        paths = download_lock(lock, cache, state_dir=tmp_path / "apt", uris=[base])
        assert [p.read_bytes() for p in paths] == [files[d.name] for d in lock.debs]
        assert paths[0] == cache.path_of(f"sha256:{lock.debs[0].sha256}")
        served = mirror.total_requests
        download_lock(lock, cache, state_dir=tmp_path / "apt", uris=[base])
        assert mirror.total_requests == served  # the second run is served by the cache


def test_download_tries_each_archive_base(tmp_path: Path) -> None:
    data = b"only on the second archive"
    lock = _lock([_pin("hello", data)])
    with serve() as mirror:
        mirror.add("second/" + lock.debs[0].filename, data)
        paths = download_lock(
            lock,
            SourceCache(tmp_path / "c"),
            state_dir=tmp_path / "apt",
            uris=[mirror.url + "first", mirror.url + "second"],
        )
    assert paths[0].read_bytes() == data


def test_other_bytes_under_the_pinned_name_are_refused(tmp_path: Path) -> None:
    lock = _lock([_pin("hello", b"the pinned bytes")])
    cache = SourceCache(tmp_path / "cache")
    with serve() as mirror:
        mirror.add("d/" + lock.debs[0].filename, b"other bytes")
        with pytest.raises(SeedError, match=r"hello_1\.0-1_amd64\.deb from .* does not match the lock"):
            download_lock(lock, cache, state_dir=tmp_path / "apt", uris=[mirror.url + "d"])
    assert cache.path_for(f"sha256:{lock.debs[0].sha256}") is None


def test_a_vanished_file_is_named_with_what_to_run(tmp_path: Path) -> None:
    lock = _lock([_pin("hello", b"gone")])
    # apt sources with no Debian entries: the archive's current version cannot be asked for, and
    # the error says so instead of guessing
    etc = _etc_apt(tmp_path, "Types: deb\nURIs: https://vendor.example.com/apt\nSuites: nodistro\n")
    with serve() as mirror, pytest.raises(PinnedFileGone) as info:
        download_lock(
            lock, SourceCache(tmp_path / "c"), state_dir=tmp_path / "apt", etc_apt=etc, uris=[mirror.url]
        )
    text = info.value.render()
    assert (
        "pool/main/h/hello/hello_1.0-1_amd64.deb (pinned hello 1.0-1) is no longer in Debian's archive"
        in text
    )
    assert "bootstrap seed --lock --target x86_64" in text


def test_an_unreachable_archive_is_not_called_gone(tmp_path: Path) -> None:
    lock = _lock([_pin("hello", b"x")])
    with pytest.raises(SeedError, match=r"cannot download hello_1\.0-1_amd64\.deb") as info:
        download_lock(
            lock, SourceCache(tmp_path / "c"), state_dir=tmp_path / "apt", uris=["http://127.0.0.1:9"]
        )
    assert not isinstance(info.value, PinnedFileGone)


def test_archive_uris_come_from_the_machine_sources(tmp_path: Path) -> None:
    lock = _lock([_pin("hello", b"x")])
    assert archive_uris(lock, _etc_apt(tmp_path)) == [
        "http://deb.example.org/debian",
        "http://security.example.org/debian-security",
    ]


def test_seed_package_lists() -> None:
    assert seed_packages("x86_64") == list(NATIVE_SEED)
    assert cross_packages("aarch64") == ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]
    assert seed_packages("riscv64")[-2:] == ["gcc-riscv64-linux-gnu", "libc6-dev-riscv64-cross"]
    assert "python3" in CONARY_STAGE
    with pytest.raises(InputError, match="unknown target 'mips'"):
        cross_packages("mips")


@pytest.mark.parametrize("name", ["x86_64", "aarch64", "riscv64", "conary-x86_64"])
def test_shipped_locks_are_complete(name: str) -> None:
    lock = read_lock(lock_path(name))
    names = {d.name for d in lock.debs}
    wanted = CONARY_STAGE if name.startswith("conary-") else seed_packages(name)
    assert set(wanted) <= names
    assert lock.packages == tuple(wanted)
    # the Essential set is in every closure
    assert {"coreutils", "bash", "dash", "sed", "grep", "tar", "gzip"} <= names


def test_fixups_package_holds_the_alternatives_links(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path / "key")[0]
    fixups = load_fixups(seed_dir() / "fixups.toml")
    first = build_fixups_package(fixups, tmp_path / "a", key)
    assert first.read_bytes() == build_fixups_package(fixups, tmp_path / "b", key).read_bytes()
    with open_package(first, None) as pkg:
        files = {f.path: f for f in pkg.manifest.files}
        assert files["usr/bin/cc"].target == "gcc" and files["usr/bin/awk"].target == "mawk"
        assert files["usr/bin/yacc"].target == "bison.yacc"
        assert pkg.read_file(files["etc/passwd"]).startswith(b"root:x:0:0:")
        assert pkg.manifest.provenance["made_by"]["usr/bin/cc"].startswith("gcc postinst")


def test_fixups_entries_must_say_why(tmp_path: Path) -> None:
    path = tmp_path / "fixups.toml"
    path.write_text(
        '[package]\nname = "f"\nversion = "1"\n[[symlink]]\npath = "usr/bin/cc"\ntarget = "gcc"\n'
    )
    with pytest.raises(InputError, match="made_by must be a non-empty string") as info:
        load_fixups(path)
    assert "symlink[0]" in info.value.render()
    path.write_text(
        '[package]\nname = "f"\nversion = "1"\n[[file]]\npath = "/etc/x"\ncontent = ""\nmade_by = "x"\n'
    )
    with pytest.raises(InputError, match="must be relative"):
        load_fixups(path)
    assert os.path.exists(path)


@pytest.mark.parametrize(
    ("archive_has", "error", "message"),
    [
        ("1.0-2", PinnedFileGone, "is no longer in Debian's archive; it now has hello 1.0-2"),
        ("1.0-1", SeedError, "Debian's index lists hello 1.0-1, but its pool lacks"),
    ],
)
def test_a_vanished_file_names_what_the_archive_has_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, archive_has: str, error: type, message: str
) -> None:
    # Debian's index, as apt would read it, stands in for the real archive here.
    monkeypatch.setattr("conary.debian.seed.current_version", lambda apt, name: archive_has)
    lock = _lock([_pin("hello", b"gone")])
    with serve() as mirror, pytest.raises(error) as info:
        download_lock(lock, SourceCache(tmp_path / "c"), state_dir=tmp_path / "apt", uris=[mirror.url])
    assert message in info.value.render()
    assert isinstance(info.value, PinnedFileGone) == (archive_has != "1.0-1")
