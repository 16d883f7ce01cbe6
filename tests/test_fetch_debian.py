from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conary.errors import InputError, MissingToolError
from conary.fetch import (
    Checksum,
    DebianSourceProvider,
    DebianSpec,
    Fetcher,
    FetchError,
    SourceCache,
    derive_source_entries,
)
from conary.fetch.debian import parse_deb822_sources, parse_one_line_sources, render_sources
from conary.fetch.errors import SourceUnavailable
from helpers_fetch import closed_port

HELLO = "sha256:31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"

ONE_LINE = """\
# The machine's main list
deb http://deb.example.org/debian bookworm main contrib  # trailing comment
deb-src http://deb.example.org/debian bookworm main contrib
deb [arch=amd64,arm64 signed-by=/usr/share/keyrings/example.gpg] https://repo.example.com/apt stable main
deb [ trusted=yes ] http://flat.example.net/repo ./
deb cdrom:[Debian GNU/Linux 12]/ bookworm main
#deb http://commented.example.org/debian bookworm main
rpm http://not-apt.example.org/ x y
"""

DEB822 = """\
Types: deb deb-src
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

# switched off
Types: deb
URIs: http://off.example.org/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
# a comment inside the stanza
URIs: https://inline.example.org/apt
Suites: stable
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGExample
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb-src
URIs: http://deb.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_one_line_entries_become_deb_src() -> None:
    entries = parse_one_line_sources(ONE_LINE)
    assert [e.fields for e in entries] == [
        (
            ("Types", "deb-src"),
            ("URIs", "http://deb.example.org/debian"),
            ("Suites", "bookworm"),
            ("Components", "main contrib"),
        ),
        (
            ("Types", "deb-src"),
            ("URIs", "http://deb.example.org/debian"),
            ("Suites", "bookworm"),
            ("Components", "main contrib"),
        ),
        (
            ("Types", "deb-src"),
            ("URIs", "https://repo.example.com/apt"),
            ("Suites", "stable"),
            ("Components", "main"),
            ("Signed-By", "/usr/share/keyrings/example.gpg"),
        ),
        (
            ("Types", "deb-src"),
            ("URIs", "http://flat.example.net/repo"),
            ("Suites", "./"),
            ("Trusted", "yes"),
        ),
    ]


def test_deb822_stanzas_become_deb_src() -> None:
    entries = parse_deb822_sources(DEB822)
    assert len(entries) == 3
    first, inline, last = entries
    assert first == last  # the deb and deb-src stanza and the deb-src one describe the same source
    assert first.render() == (
        "Types: deb-src\nURIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    assert first.get("architectures") is None
    key = inline.get("Signed-By")
    assert key is not None and key.splitlines()[1:] == [
        " -----BEGIN PGP PUBLIC KEY BLOCK-----",
        " .",
        " mQINBGExample",
        " -----END PGP PUBLIC KEY BLOCK-----",
    ]
    assert "off.example.org" not in render_sources(entries)


def test_derive_reads_list_and_sources_files_and_dedupes(tmp_path: Path) -> None:
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("deb http://deb.example.org/debian bookworm main\n")
    (etc / "sources.list.d" / "extra.list").write_text("deb http://extra.example.org/ stable main\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm\nComponents: main\n"
    )
    (etc / "sources.list.d" / "old.list.disabled").write_text("deb http://disabled.example.org/ x main\n")
    (etc / "sources.list.d" / "notes.txt").write_text("deb http://notes.example.org/ x main\n")
    text = render_sources(derive_source_entries(etc))
    assert text == (
        "Types: deb-src\nURIs: http://deb.example.org/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://extra.example.org/\nSuites: stable\nComponents: main\n"
    )


def test_no_apt_sources_is_reported(tmp_path: Path) -> None:
    provider = DebianSourceProvider(tmp_path / "state", etc_apt=tmp_path / "empty")
    with pytest.raises(SourceUnavailable) as info:
        provider.retrieve(DebianSpec("hello"), Checksum.parse(HELLO), SourceCache(tmp_path / "c"))
    assert "no apt sources found" in info.value.reason


def test_debian_spec_parse() -> None:
    assert DebianSpec.parse("hello") == DebianSpec("hello", None)
    assert DebianSpec.parse("busybox=1:1.35.0-4+deb12u1") == DebianSpec("busybox", "1:1.35.0-4+deb12u1")
    assert DebianSpec.parse("hello=2.10-3").apt_argument() == "hello=2.10-3"
    for bad in ("", "Hello", "hello=", "he llo", "hello=2.10 3", "-x"):
        with pytest.raises(InputError):
            DebianSpec.parse(bad)


def test_apt_options_keep_all_state_private(tmp_path: Path) -> None:
    options = DebianSourceProvider(tmp_path / "state").apt_options()
    values = dict(o.split("=", 1) for o in options if o != "-o")
    for name in (
        "Dir::State",
        "Dir::State::lists",
        "Dir::State::status",
        "Dir::Cache",
        "Dir::Cache::archives",
        "Dir::Etc::sourcelist",
        "Dir::Etc::sourceparts",
        "Dir::Etc::preferences",
        "Dir::Etc::preferencesparts",
    ):
        assert values[name].startswith(str(tmp_path / "state")), name
    assert values["Acquire::Languages"] == "none"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> DebianSourceProvider:
    return DebianSourceProvider(tmp_path_factory.mktemp("debian-apt"))


@pytest.mark.network
def test_hello_orig_tarball_from_debian_is_upstreams(provider: DebianSourceProvider, tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache")
    path = provider.retrieve(DebianSpec("hello"), Checksum.parse(HELLO), cache)
    assert path == cache.path_of(HELLO)
    assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == HELLO
    lists = provider.state_dir / "state" / "lists"
    assert any(lists.glob("*Sources*"))
    # The temp download directory is gone; only the cache holds the file.
    assert list((provider.state_dir / "downloads").iterdir()) == []


@pytest.mark.network
def test_fetcher_uses_debian_before_a_dead_url(provider: DebianSourceProvider, tmp_path: Path) -> None:
    fetcher = Fetcher(SourceCache(tmp_path / "cache"), [], progress=False, debian=provider)
    url = f"http://127.0.0.1:{closed_port()}/gnu/hello/hello-2.10.tar.gz"
    path = fetcher.fetch(url, HELLO, debian="hello")
    assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == HELLO


@pytest.mark.network
def test_debian_package_without_the_bytes_lists_what_it_had(
    provider: DebianSourceProvider, tmp_path: Path
) -> None:
    fetcher = Fetcher(SourceCache(tmp_path / "cache"), [], progress=False, debian=provider)
    url = f"http://127.0.0.1:{closed_port()}/hello-2.10.tar.gz"
    other = "sha256:" + hashlib.sha256(b"not hello").hexdigest()
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url, other, debian="hello")
    line = info.value.render()
    # Debian had the package, so the error compares its orig tarball with the pin.
    assert "checksum mismatch: Debian's hello_" in line
    assert f"the recipe pins {other}" in line
    assert not any(
        p.is_file()
        for p in (tmp_path / "cache").rglob("*")
        if ".locks" not in p.parts and ".debian-apt" not in p.parts
    )


@pytest.mark.network
def test_unknown_debian_package_is_reported(provider: DebianSourceProvider, tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as info:
        provider.retrieve(DebianSpec("no-such-package-conary"), Checksum.parse(HELLO), SourceCache(tmp_path))
    assert "Unable to find a source package for no-such-package-conary" in info.value.reason


def test_missing_apt_get_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("apt-get") is None
    with pytest.raises(MissingToolError) as info:
        DebianSourceProvider(tmp_path / "s").retrieve(
            DebianSpec("hello"), Checksum.parse(HELLO), SourceCache(tmp_path)
        )
    assert "apt-get install apt" in info.value.render()
