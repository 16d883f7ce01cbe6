"""`--skip-verify`: a source whose pinned bytes are nowhere, but whose re-rolled bytes are on a
mirror, is built from those bytes only when the operator says so; loudly, recorded in the
package's provenance and in its derivation key, with the cache holding the bytes under their own
checksum only. Without the flag, and for a source missing everywhere, nothing changes."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conary.ccs import Package, open_package
from conary.cook import CookOptions, cook_recipe
from conary.fetch import ChecksumMismatchError, DirectoryMirror, Fetcher, FetchError, SourceCache
from conary.graph import CheckpointStore
from conary.targets import targets_dir
from helpers_fetch import closed_port, serve, sha256_of

MTIME = 1_700_000_000


def tarball(text: str) -> bytes:
    """tiny-1.0/payload.txt holding *text*, with fixed metadata."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        top = tarfile.TarInfo("tiny-1.0")
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, MTIME
        tar.addfile(top)
        info = tarfile.TarInfo("tiny-1.0/payload.txt")
        info.size, info.mode, info.mtime = len(data), 0o644, MTIME
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


PINNED = tarball("the release as first published\n")
REROLLED = tarball("the release as re-rolled upstream\n")
OTHER = tarball("yet another roll\n")

RECIPE = """\
[package]
name = "tiny"
version = "1.0"
summary = "a re-rolled tarball"
license = "MIT"

[source]
archive = "{url}"
checksum = "{checksum}"

[build]
install = "install -D -m 644 payload.txt %(destdir)s/usr/share/tiny/payload.txt"
"""

PROFILE = """\
[profile]
name = "reroll"
targets = ["x86_64"]

[[stages]]
name = "stage1"
recipes = ["recipes/tiny.recipe.toml"]
root = ["seed"]
"""


def url() -> str:
    """An upstream that refuses connections: the mirror is the only place with bytes."""
    return f"http://127.0.0.1:{closed_port()}/tiny-1.0.tar"


def mirror_with(tmp_path: Path, data: bytes, name: str = "mirror") -> Path:
    mirror = tmp_path / name
    mirror.mkdir()
    (mirror / "tiny-1.0.tar").write_bytes(data)
    return mirror


def cache_files(cache: Path) -> set[str]:
    """The checksums the cache holds bytes for (its <algo>/<hex> files)."""
    return {f"{p.parent.name}:{p.name}" for p in cache.glob("sha*/*")}


# --------------------------------------------------------------------------- the fetcher


def test_mismatch_fails_without_skip_verify_and_keeps_nothing(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache")
    fetcher = Fetcher(cache, [DirectoryMirror(mirror_with(tmp_path, REROLLED))])
    with pytest.raises(ChecksumMismatchError) as caught:
        fetcher.fetch_source(url(), sha256_of(PINNED))
    assert caught.value.actual == sha256_of(REROLLED)
    assert cache_files(cache.root) == set()
    assert cache.substitute_for(sha256_of(PINNED)) is None


def test_skip_verify_takes_the_first_mismatching_bytes_under_their_own_checksum(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache")
    first, second = mirror_with(tmp_path, REROLLED, "first"), mirror_with(tmp_path, OTHER, "second")
    with serve() as server:
        server.files["/tiny-1.0.tar"] = OTHER
        upstream = f"{server.url}tiny-1.0.tar"
        fetcher = Fetcher(cache, [DirectoryMirror(first), DirectoryMirror(second)], progress=False)
        got = fetcher.fetch_source(upstream, sha256_of(PINNED), skip_verify=True)
    assert got.substitute is not None and not got.verified
    assert got.substitute.pinned == sha256_of(PINNED)
    assert got.substitute.actual == sha256_of(REROLLED)  # the first mirror's, in the usual order
    assert got.substitute.origin == str(first / "tiny-1.0.tar")
    assert got.path.read_bytes() == REROLLED
    # Content-addressed and honest: the bytes are under their own checksum, and only those.
    assert cache_files(cache.root) == {sha256_of(REROLLED)}
    assert cache.path_for(sha256_of(PINNED)) is None

    # The note answers the next skip-verify fetch without any place to ask; a verifying fetch
    # ignores it and fails as before.
    offline = Fetcher(cache, [], offline=True)
    again = offline.fetch_source(url(), sha256_of(PINNED), skip_verify=True)
    assert again.substitute == got.substitute and again.path == got.path
    with pytest.raises(FetchError, match="not found"):
        offline.fetch(url(), sha256_of(PINNED))

    # Once the pinned bytes are in the cache, they win: the source is verified again.
    pinned_mirror = mirror_with(tmp_path, PINNED, "pinned")
    Fetcher(cache, [DirectoryMirror(pinned_mirror)]).fetch(url(), sha256_of(PINNED))
    assert offline.fetch_source(url(), sha256_of(PINNED), skip_verify=True).verified


def test_a_source_missing_everywhere_still_fails_with_skip_verify(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fetcher = Fetcher(SourceCache(tmp_path / "cache"), [DirectoryMirror(empty)])
    with pytest.raises(FetchError, match="not found") as caught:
        fetcher.fetch_source(url(), sha256_of(PINNED), skip_verify=True)
    assert not isinstance(caught.value, ChecksumMismatchError)


# --------------------------------------------------------------------------- conary cook


def test_cook_records_the_unverified_source_in_provenance(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.recipe.toml"
    recipe.write_text(RECIPE.format(url=url(), checksum=sha256_of(PINNED)))
    mirror = mirror_with(tmp_path, REROLLED)
    warned: list[str] = []
    base = CookOptions(
        output_dir=tmp_path / "out",
        source_cache=tmp_path / "cache",
        mirrors=(str(mirror),),
        warn=warned.append,
    )
    with pytest.raises(ChecksumMismatchError):
        cook_recipe(recipe, base)
    assert warned == [] and not (tmp_path / "out").exists()

    result = cook_recipe(recipe, dataclasses.replace(base, skip_verify=True))
    assert len(warned) == 1
    assert warned[0].startswith("UNVERIFIED source tiny-1.0.tar of tiny (source.archive) from ")
    assert f"pins {sha256_of(PINNED)}, the bytes are {sha256_of(REROLLED)}" in warned[0]
    with open_package(result.package_path) as package:
        provenance = package.manifest.provenance
        payload = payload_of(package)
    assert provenance["unverified_sources"] == [
        {
            "key": "source.archive",
            "url": recipe_url(recipe),
            "pinned": sha256_of(PINNED),
            "actual": sha256_of(REROLLED),
        }
    ]
    assert payload == b"the release as re-rolled upstream\n"


def test_cook_fetch_only_says_which_bytes_are_unverified(cli, tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.recipe.toml"
    recipe.write_text(RECIPE.format(url=url(), checksum=sha256_of(PINNED)))
    mirror, cache = mirror_with(tmp_path, REROLLED), tmp_path / "cache"
    args = ("cook", "--fetch-only", "--json", "--source-cache", cache, "--mirror", mirror, recipe)
    refused = cli(*args)
    assert refused.code != 0 and "checksum mismatch" in refused.err and "--skip-verify builds" in refused.err

    result = cli(*args, "--skip-verify")
    assert result.code == 0
    actual = sha256_of(REROLLED)
    assert json.loads(result.out) == [
        {
            "key": "source.archive",
            "url": recipe_url(recipe),
            "checksum": sha256_of(PINNED),
            "actual": actual,
            "verified": False,
            "path": str(cache / "sha256" / actual.removeprefix("sha256:")),
        }
    ]
    assert "conary: warning: --skip-verify: a source whose bytes differ" in result.err
    assert result.err.count("conary: warning: UNVERIFIED source tiny-1.0.tar of tiny") == 1


def payload_of(package: Package) -> bytes:
    (entry,) = (f for f in package.files() if f.path == "usr/share/tiny/payload.txt")
    return package.read_file(entry)


def recipe_url(recipe: Path) -> str:
    return recipe.read_text().split('archive = "', 1)[1].split('"', 1)[0]


# --------------------------------------------------------------------------- conary bootstrap


def conary(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "conary", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"conary {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def reroll_tree(tmp_path: Path) -> Path:
    """A distro tree of one package whose tarball upstream re-rolled; returns the profile."""
    tree = tmp_path / "tree"
    (tree / "recipes").mkdir(parents=True)
    (tree / "stages").mkdir()
    shutil.copytree(targets_dir(), tree / "toolchains")
    (tree / "recipes" / "tiny.recipe.toml").write_text(RECIPE.format(url=url(), checksum=sha256_of(PINNED)))
    profile = tree / "stages" / "reroll.toml"
    profile.write_text(PROFILE)
    return profile


def init(tmp_path: Path, name: str, *flags: str, mirror: Path | None = None) -> tuple[Path, Path]:
    """A work dir over the re-rolling mirror (or *mirror*), with a source cache of its own."""
    profile = tmp_path / "tree" / "stages" / "reroll.toml"
    if not profile.exists():
        reroll_tree(tmp_path)
    if mirror is None:
        mirror = tmp_path / "mirror"
        if not mirror.exists():
            mirror_with(tmp_path, REROLLED)
    work, cache = tmp_path / name, tmp_path / f"{name}-cache"
    conary(
        "bootstrap", "init", "--target", "x86_64", "--profile", profile, "--seed", "host",
        "--work", work, "--mirror", mirror, "--source-cache", cache, *flags,
    )  # fmt: skip
    return work, cache


def status(work: Path) -> dict[str, object]:
    return json.loads(conary("bootstrap", "status", "--work", work, "--json").stdout)


def test_bootstrap_fails_on_the_mismatch_without_skip_verify(tmp_path: Path) -> None:
    work, cache = init(tmp_path, "verified")
    failed = conary("bootstrap", "run", "--work", work, check=False)
    assert failed.returncode == 1
    assert "tiny failed" in failed.stdout
    log = failed.stdout.split("log: ", 1)[1].split()[0]
    assert f"checksum mismatch for {tmp_path / 'mirror' / 'tiny-1.0.tar'}" in Path(log).read_text()
    assert "UNVERIFIED" not in failed.stderr and "skip-verify" not in failed.stderr
    assert status(work)["skip_verify"] is False
    assert cache_files(cache) == set()


def test_bootstrap_skip_verify_still_fails_a_source_no_place_has(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    work, cache = init(tmp_path, "missing", "--skip-verify", mirror=empty)
    failed = conary("bootstrap", "run", "--work", work, check=False)
    assert failed.returncode == 1 and "tiny failed" in failed.stdout
    log = failed.stdout.split("log: ", 1)[1].split()[0]
    assert f"{sha256_of(PINNED)} not found: tried cache, mirror {empty} (not found)" in Path(log).read_text()
    assert "UNVERIFIED source" not in failed.stderr
    assert status(work)["stages"][0]["packages"][0]["state"] == "failed"
    assert cache_files(cache) == set()


def test_bootstrap_skip_verify_builds_loudly_and_keys_the_actual_bytes(tmp_path: Path) -> None:
    work, cache = init(tmp_path, "unverified", "--skip-verify")
    assert "skip_verify = true" in (work / "bootstrap.toml").read_text()
    shown = conary("bootstrap", "status", "--work", work).stdout
    assert "skip-verify: ON" in shown
    assert status(work)["skip_verify"] is True
    assert "skip-verify: ON" in conary("bootstrap", "dry-run", "--work", work, check=False).stdout

    first = conary("bootstrap", "run", "--work", work)
    assert "stage1: done" in first.stdout
    warnings = [line for line in first.stderr.splitlines() if "warning:" in line]
    assert warnings[0].startswith(f"conary: warning: --skip-verify is on for {work}")
    unverified = [line for line in warnings if "UNVERIFIED" in line]
    assert unverified == [
        f"conary: warning: UNVERIFIED source tiny-1.0.tar of tiny (source.archive) from "
        f"{tmp_path / 'mirror' / 'tiny-1.0.tar'}: the recipe pins {sha256_of(PINNED)}, the bytes are "
        f"{sha256_of(REROLLED)}; used anyway (--skip-verify)"
    ]
    assert cache_files(cache) == {sha256_of(REROLLED)}

    package = work / "repo" / "stage1" / "tiny-1.0-1.x86_64.ccs"
    with open_package(package) as opened:
        provenance = opened.manifest.provenance
    assert provenance["unverified_sources"][0]["pinned"] == sha256_of(PINNED)
    assert provenance["unverified_sources"][0]["actual"] == sha256_of(REROLLED)
    (entry,) = status(work)["stages"][0]["packages"]
    unverified_key = entry["key"]
    assert provenance["derivation_key"] == unverified_key
    with CheckpointStore(work / "state") as store:
        key_text = store.get(unverified_key).key_text
    assert f"unverified:{sha256_of(PINNED)}:{sha256_of(REROLLED)}\n" in key_text

    # A re-run is a no-op, and still says what it builds from.
    again = conary("bootstrap", "run", "--work", work)
    assert "1 cached" in again.stdout and again.stderr.count("UNVERIFIED source") == 1

    # The pinned bytes turn up: the same package is now a verified build, under another key, and
    # is built again rather than taken from the unverified checkpoint.
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "tiny-1.0.tar").write_bytes(PINNED)
    conary("cook", "--fetch-only", "--source-cache", cache, "--mirror", tmp_path / "good",
           tmp_path / "tree" / "recipes" / "tiny.recipe.toml")  # fmt: skip
    verified = conary("bootstrap", "run", "--work", work)
    assert "1 built" in verified.stdout and "UNVERIFIED source" not in verified.stderr
    (entry,) = status(work)["stages"][0]["packages"]
    assert entry["key"] != unverified_key
    with open_package(package) as opened:
        assert "unverified_sources" not in opened.manifest.provenance
        assert payload_of(opened) == b"the release as first published\n"

    # That verified key is the one a work dir without --skip-verify computes for the same inputs.
    plain, plain_cache = init(tmp_path, "plain")
    plain_cache.mkdir(parents=True, exist_ok=True)
    conary("cook", "--fetch-only", "--source-cache", plain_cache, "--mirror", tmp_path / "good",
           tmp_path / "tree" / "recipes" / "tiny.recipe.toml")  # fmt: skip
    conary("bootstrap", "run", "--work", plain)
    (plain_entry,) = status(plain)["stages"][0]["packages"]
    assert plain_entry["key"] == entry["key"]
