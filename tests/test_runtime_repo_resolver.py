"""The resolver's provider: capability matching, version preference, installed set, precise errors."""

from __future__ import annotations

import pytest

from conary.ccs import Dependency
from conary.errors import InputError
from conary.runtime.index import IndexEntry
from conary.runtime.repo import Repo
from conary.runtime.resolver import (
    PackageCandidate,
    ResolveError,
    compare_versions,
    parse_request,
    resolve_candidates,
    version_matches,
)

MAIN = Repo("main", "/srv/main")
EXTRA = Repo("extra", "/srv/extra")


def pkg(
    name: str,
    version: str = "1.0",
    *,
    release: str = "1",
    provides: tuple[tuple[str, str], ...] = (),
    requires: tuple[tuple[str, str] | tuple[str, str, str], ...] = (),
    files: tuple[str, ...] = (),
    repo: Repo = MAIN,
    rank: int = 0,
) -> PackageCandidate:
    entry = IndexEntry(
        name=name,
        version=version,
        release=release,
        arch="x86_64",
        filename=f"{name}-{version}-{release}.x86_64.ccs",
        size=1,
        sha256="0" * 64,
        provides=(
            Dependency("package", name, f"{version}-{release}"),
            *(Dependency(k, n) for k, n in provides),
        ),
        requires=tuple(Dependency(*r) for r in requires),
        components=("runtime",),
        default_components=("runtime",),
        files=files,
    )
    return PackageCandidate(entry, repo, rank)


def names(resolution) -> list[str]:
    return [c.entry.nevra for c in resolution.chosen]


LIBFOO = pkg("libfoo", provides=(("soname", "libfoo.so.1(x86-64)"),))
APP = pkg("app", requires=(("soname", "libfoo.so.1(x86-64)"),))


def test_soname_requirement_resolves_to_its_provider_dependencies_first() -> None:
    assert names(resolve_candidates(["app"], [APP, LIBFOO])) == ["libfoo-1.0-1.x86_64", "app-1.0-1.x86_64"]


@pytest.mark.parametrize(
    ("kind", "name", "provides", "files"),
    [
        ("pkgconfig", "foo", (("pkgconfig", "foo"),), ()),
        ("binary", "foo-config", (("binary", "foo-config"),), ()),
        ("binary", "foo-tool", (), ("usr/bin/foo-tool",)),
        ("file", "/usr/share/foo/data", (), ("usr/share/foo/data",)),
        ("interpreter", "/lib64/ld-linux-x86-64.so.2", (("interpreter", "/lib64/ld-linux-x86-64.so.2"),), ()),
    ],
)
def test_each_capability_kind_finds_its_provider(kind: str, name: str, provides: tuple, files: tuple) -> None:
    provider = pkg("provider", provides=provides, files=files)
    consumer = pkg("consumer", requires=((kind, name),))
    other = pkg("other", provides=(("soname", "libunrelated.so.1(x86-64)"),))
    assert names(resolve_candidates(["consumer"], [consumer, provider, other])) == [
        "provider-1.0-1.x86_64",
        "consumer-1.0-1.x86_64",
    ]


def test_highest_version_wins_across_repositories() -> None:
    old = pkg("tool", "1.9", repo=MAIN, rank=0)
    new = pkg("tool", "1.10", repo=EXTRA, rank=1)
    assert names(resolve_candidates(["tool"], [old, new])) == ["tool-1.10-1.x86_64"]
    chosen = resolve_candidates(["tool"], [old, new]).chosen[0]
    assert chosen.repo is EXTRA


def test_equal_versions_prefer_the_earlier_repository() -> None:
    first = pkg("tool", repo=MAIN, rank=0)
    second = pkg("tool", repo=EXTRA, rank=1)
    assert resolve_candidates(["tool"], [second, first]).chosen[0].repo is MAIN


def test_exact_version_request() -> None:
    cands = [pkg("tool", "1.0"), pkg("tool", "2.0"), pkg("tool", "2.0", release="2")]
    assert names(resolve_candidates(["tool=1.0"], cands)) == ["tool-1.0-1.x86_64"]
    assert names(resolve_candidates(["tool=2.0-1"], cands)) == ["tool-2.0-1.x86_64"]
    assert names(resolve_candidates(["tool"], cands)) == ["tool-2.0-2.x86_64"]


def test_installed_provider_satisfies_the_requirement() -> None:
    installed = [Dependency("soname", "libfoo.so.1(x86-64)")]
    assert names(resolve_candidates(["app"], [APP, LIBFOO], installed)) == ["app-1.0-1.x86_64"]
    assert names(resolve_candidates(["app"], [APP, LIBFOO], lambda dep: dep.kind == "soname")) == [
        "app-1.0-1.x86_64"
    ]


def test_installed_package_version_must_match_the_constraint() -> None:
    class Manifest:
        name, version, release, provides, files = "libfoo", "1.0", "1", (), ()

    needs_new = pkg("app", requires=(("package", "libfoo", ">= 2.0"),))
    libfoo2 = pkg("libfoo", "2.0")
    assert names(resolve_candidates(["app"], [needs_new, libfoo2], [Manifest()])) == [
        "libfoo-2.0-1.x86_64",
        "app-1.0-1.x86_64",
    ]
    needs_old = pkg("app", requires=(("package", "libfoo", ">= 1.0"),))
    assert names(resolve_candidates(["app"], [needs_old, libfoo2], [Manifest()])) == ["app-1.0-1.x86_64"]


def test_backtracks_to_an_older_version_whose_requirements_can_be_met() -> None:
    new = pkg("app", "2.0", requires=(("soname", "libbar.so.2(x86-64)"),))
    old = pkg("app", "1.0", requires=(("soname", "libfoo.so.1(x86-64)"),))
    assert names(resolve_candidates(["app"], [new, old, LIBFOO])) == [
        "libfoo-1.0-1.x86_64",
        "app-1.0-1.x86_64",
    ]


def test_two_consumers_share_one_provider() -> None:
    second = pkg("app2", requires=(("soname", "libfoo.so.1(x86-64)"), ("package", "app")))
    chosen = names(resolve_candidates(["app2"], [APP, second, LIBFOO]))
    assert chosen.count("libfoo-1.0-1.x86_64") == 1
    assert (
        chosen.index("libfoo-1.0-1.x86_64")
        < chosen.index("app-1.0-1.x86_64")
        < chosen.index("app2-1.0-1.x86_64")
    )


def test_missing_capability_is_named_with_who_needs_it() -> None:
    with pytest.raises(ResolveError) as err:
        resolve_candidates(["app"], [APP])
    assert "nothing provides soname(libfoo.so.1(x86-64)) (needed by app-1.0-1.x86_64)" in err.value.render()


def test_unknown_package_and_unmatched_version_are_named() -> None:
    with pytest.raises(ResolveError, match=r"no package named 'nope' \(requested\)"):
        resolve_candidates(["nope"], [APP])
    with pytest.raises(ResolveError, match=r"no version of app matches '= 9'"):
        resolve_candidates(["app=9"], [APP, LIBFOO])


def test_capability_request_without_abi_qualifier() -> None:
    assert names(resolve_candidates(["soname(libfoo.so.1)"], [APP, LIBFOO])) == ["libfoo-1.0-1.x86_64"]


def test_component_request_resolves_the_package() -> None:
    request = parse_request("libfoo:devel=1.0")
    assert request.component == "devel"
    assert names(resolve_candidates(["libfoo:devel"], [LIBFOO])) == ["libfoo-1.0-1.x86_64"]


@pytest.mark.parametrize("bad", ["", "=1.0", "foo bar", "foo:", "weird(x)"])
def test_malformed_requests_are_input_errors(bad: str) -> None:
    with pytest.raises(InputError):
        parse_request(bad)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0", 0),
        ("1.10", "1.9", 1),
        ("1.0", "1.0.1", -1),
        ("2.0~rc1", "2.0", -1),
        ("1.0a", "1.0", 1),
        ("1.0", "1.a", 1),
        ("6.16.1", "6.2", 1),
    ],
)
def test_compare_versions(a: str, b: str, expected: int) -> None:
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_version_constraints() -> None:
    assert version_matches("", "1.0", "1")
    assert version_matches(">= 1.2", "1.10", "1")
    assert not version_matches("< 1.2", "1.10", "1")
    assert version_matches("= 1.0-2", "1.0", "2")
    assert not version_matches("= 1.0-2", "1.0", "3")
    assert version_matches("1.0", "1.0", "7")


def test_capability_falls_back_to_an_older_provider_when_the_newest_is_excluded() -> None:
    new = pkg("libfoo", "2.0", provides=(("soname", "libfoo.so.1(x86-64)"),))
    old = pkg("libfoo", "1.0", provides=(("soname", "libfoo.so.1(x86-64)"),))
    app = pkg("app", requires=(("soname", "libfoo.so.1(x86-64)"), ("package", "libfoo", "< 2")))
    assert names(resolve_candidates(["app"], [app, new, old])) == ["libfoo-1.0-1.x86_64", "app-1.0-1.x86_64"]
    assert names(resolve_candidates(["app"], [APP, new, old])) == ["libfoo-2.0-1.x86_64", "app-1.0-1.x86_64"]


def test_capability_request_with_the_abi_qualifier() -> None:
    assert names(resolve_candidates(["soname(libfoo.so.1(x86-64))"], [APP, LIBFOO])) == [
        "libfoo-1.0-1.x86_64"
    ]
