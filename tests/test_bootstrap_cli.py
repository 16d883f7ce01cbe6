"""`conary bootstrap init|check|dry-run`: choices persisted in the work dir, host prerequisites, and a
dry run that lists every package and source and fails when anything is missing."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from conary.bootstrap import BootstrapConfig, load_config, save_config
from conary.debian.lock import PinnedDeb, SeedLock, write_lock
from conary.errors import InputError

RECIPE = """\
[package]
name = "{name}"
version = "1.{n}"

[source]
archive = "https://example.invalid/src/{name}-1.{n}.tar.gz"
checksum = "sha256:{digest}"

[build]
install = "true"
"""

PROFILE = """\
[profile]
name = "fixture"
targets = ["x86_64", "aarch64"]

[seed]
packages = ["build-essential"]

[[stages]]
name = "stage1"
summary = "the first"
recipes = ["recipes/a.recipe.toml"]
root = ["seed"]

[[stages]]
name = "stage2"
optional = true
rebuild = "stage1"
root = ["seed", "stage1"]

[[stages]]
name = "base"
recipes = ["recipes/b.recipe.toml", "recipes/c.recipe.toml"]
root = ["seed", "stage1"]
"""


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, object]:
    """A distro tree with a three-stage profile; a's source is in the cache, b's on a directory
    mirror (by file name), c's nowhere."""
    root = tmp_path / "tree"
    (root / "recipes").mkdir(parents=True)
    (root / "stages" / "seed").mkdir(parents=True)
    cache = tmp_path / "cache"
    mirror = tmp_path / "mirror"
    (cache / "sha256").mkdir(parents=True)
    mirror.mkdir()
    # A lock of one .deb, which is in the cache.
    deb = b"!<arch>\nnot really a deb\n"
    deb_digest = hashlib.sha256(deb).hexdigest()
    (cache / "sha256" / deb_digest).write_bytes(deb)
    pool = "pool/f/fixture_1.0_amd64.deb"
    pinned = PinnedDeb("fixture", "1.0", "amd64", "bookworm", pool, len(deb), deb_digest)
    lock = SeedLock("x86_64", "bookworm", "amd64", ("fixture",), (pinned,))
    write_lock(lock, root / "stages" / "seed" / "x86_64.lock")
    blobs = {}
    for n, name in enumerate("abc"):
        data = f"source of {name}\n".encode()
        digest = hashlib.sha256(data).hexdigest()
        blobs[name] = (data, digest, f"{name}-1.{n}.tar.gz")
        (root / "recipes" / f"{name}.recipe.toml").write_text(RECIPE.format(name=name, n=n, digest=digest))
    (cache / "sha256" / blobs["a"][1]).write_bytes(blobs["a"][0])
    (mirror / blobs["b"][2]).write_bytes(blobs["b"][0])
    profile = root / "stages" / "fixture.toml"
    profile.write_text(PROFILE)
    return {"profile": profile, "cache": cache, "mirror": mirror, "blobs": blobs}


def test_dry_run_lists_packages_and_fails_on_a_missing_source(cli, tree, tmp_path: Path) -> None:
    args = [
        "bootstrap",
        "dry-run",
        "--work",
        tmp_path / "none",
        "--profile",
        tree["profile"],
        "--target",
        "x86_64",
        "--source-cache",
        tree["cache"],
        "--mirror",
        tree["mirror"],
    ]
    result = cli(*args)
    assert result.code == 1, result.err
    assert "a 1.0-1  build" in result.out and "b 1.1-1  build" in result.out
    c_digest = tree["blobs"]["c"][1]
    assert f"sha256:{c_digest}  missing  https://example.invalid/src/c-1.2.tar.gz" in result.out
    assert "4 packages in 3 stages, 3 sources: 2 present, 1 missing" in result.out
    assert "x86_64.lock: 1 .debs, 1 in the cache" in result.out

    report = json.loads(cli(*args, "--json").out)
    states = {p["name"]: p["sources"][0]["state"] for s in report["stages"] for p in s["packages"]}
    assert states == {"a": "cache", "b": "mirror", "c": "missing"}
    assert [s["name"] for s in report["stages"]] == ["stage1", "stage2", "base"]
    assert report["ok"] is False and report["missing"] == 1

    data, _digest, filename = tree["blobs"]["c"]
    (tree["mirror"] / filename).write_bytes(data)
    result = cli(*args)
    assert result.code == 0, result.out
    assert "3 sources: 3 present, 0 missing; 0 errors" in result.out


def test_dry_run_finds_files_beside_the_recipe_by_their_checksum(cli, tree, tmp_path: Path) -> None:
    """A recipe's local files (a config beside it) are at hand without the cache; one whose bytes
    differ from the recipe's checksum is missing, and the plan says so."""
    data, digest, _name = tree["blobs"]["c"]
    recipe = tree["profile"].parent.parent / "recipes" / "c.recipe.toml"
    recipe.write_text(recipe.read_text().replace("https://example.invalid/src/c-1.2.tar.gz", "c/c.config"))
    (recipe.parent / "c").mkdir()
    (recipe.parent / "c" / "c.config").write_bytes(data)
    args = ["bootstrap", "dry-run", "--work", tmp_path / "none", "--profile", tree["profile"],
            "--target", "x86_64", "--source-cache", tree["cache"], "--mirror", tree["mirror"]]  # fmt: skip
    result = cli(*args)
    assert result.code == 0, result.out
    assert f"sha256:{digest}  local  c/c.config" in result.out
    assert "3 sources: 3 present, 0 missing; 0 errors" in result.out

    (recipe.parent / "c" / "c.config").write_bytes(b"edited\n")
    result = cli(*args)
    assert result.code == 1
    assert f"sha256:{digest}  missing  c/c.config" in result.out
    assert "not the recipe's checksum" in result.out


def test_dry_run_names_a_missing_debian_lock_and_the_skip_option(cli, tree, tmp_path: Path) -> None:
    profile = tree["profile"]
    profile.write_text(
        profile.read_text()
        + '\n[[stages]]\nname = "conary"\noptional = true\nroot = ["seed"]\n'
        + 'debian = { lock = "conary", packages = ["python3"] }\n'
    )
    (tree["mirror"] / tree["blobs"]["c"][2]).write_bytes(tree["blobs"]["c"][0])
    args = ["bootstrap", "dry-run", "--work", tmp_path / "none", "--profile", profile, "--target",
            "x86_64", "--source-cache", tree["cache"], "--mirror", tree["mirror"]]  # fmt: skip
    result = cli(*args)
    assert result.code == 1
    assert (
        "conary-x86_64.lock: error: stage conary needs the lock conary-x86_64.lock, which does not "
        "exist: skip the stage (--skip-conary)"
    ) in result.out
    assert cli(*args, "--skip-conary").code == 0


def test_dry_run_without_a_seed_lock_fails_and_says_how_to_make_one(cli, tree, tmp_path: Path) -> None:
    data, _digest, filename = tree["blobs"]["c"]
    (tree["mirror"] / filename).write_bytes(data)
    result = cli(
        "bootstrap",
        "dry-run",
        "--work",
        tmp_path / "none",
        "--profile",
        tree["profile"],
        "--target",
        "aarch64",
        "--source-cache",
        tree["cache"],
        "--mirror",
        tree["mirror"],
    )
    assert result.code == 1
    assert "aarch64.lock: MISSING (run 'conary bootstrap seed --lock')" in result.out
    # The cross target's compilers join the seed.
    assert "3 Debian packages" in result.out  # build-essential and the two cross packages


def test_dry_run_reports_an_invalid_recipe(cli, tree, tmp_path: Path) -> None:
    recipe = tree["profile"].parent.parent / "recipes" / "b.recipe.toml"
    recipe.write_text(recipe.read_text().replace('install = "true"', 'instal = "true"'))
    result = cli(
        "bootstrap",
        "dry-run",
        "--work",
        tmp_path / "none",
        "--profile",
        tree["profile"],
        "--target",
        "x86_64",
        "--source-cache",
        tree["cache"],
    )
    assert result.code == 1
    assert f"{recipe}: error: build.instal: unknown key 'instal' (did you mean 'install'?)" in result.out


def test_dry_run_without_work_dir_or_profile_is_one_line(cli, tmp_path: Path) -> None:
    result = cli("bootstrap", "dry-run", "--work", tmp_path / "none")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "needs --profile and --target" in result.err


def test_init_persists_choices_that_later_commands_use(cli, tree, tmp_path: Path) -> None:
    work = tmp_path / "work"
    result = cli(
        "bootstrap",
        "init",
        "--target",
        "aarch64",
        "--profile",
        "minimal",
        "--work",
        work,
        "--jobs",
        "2",
        "--mirror",
        tree["mirror"],
        "--source-cache",
        tree["cache"],
        "--skip-stage2",
    )
    assert result.code == 0, result.err
    data = tomllib.loads((work / "bootstrap.toml").read_text())
    assert data["target"] == "aarch64" and data["jobs"] == 2 and data["skip_stage2"] is True
    config = load_config(work)
    assert config.mirrors == (str(tree["mirror"]),) and config.source_cache == tree["cache"]
    # dry-run takes the work dir's choices: Stage2 is skipped, the target is aarch64
    report = json.loads(cli("bootstrap", "dry-run", "--work", work, "--json").out)
    assert report["target"] == "aarch64"
    stage2 = next(s for s in report["stages"] if s["name"] == "stage2")
    assert stage2["skipped"] and stage2["reason"] == "--skip-stage2"
    assert all(p["action"] == "skip" for p in stage2["packages"])


def test_init_rejects_what_the_profile_does_not_allow(cli, tmp_path: Path) -> None:
    result = cli("bootstrap", "init", "--target", "mips", "--work", tmp_path / "w")
    assert result.code == 2 and "unknown target 'mips'" in result.err and "x86_64" in result.err
    result = cli("bootstrap", "init", "--target", "x86_64", "--skip-conary", "--work", tmp_path / "w")
    assert result.code == 2 and "the conary stage is required for x86_64" in result.err
    assert not (tmp_path / "w" / "bootstrap.toml").exists()


def test_config_round_trip_and_newer_format_refused(tmp_path: Path) -> None:
    config = BootstrapConfig(work=tmp_path, target="riscv64", jobs=3, mirrors=("/m",), seed="host")
    save_config(config)
    assert load_config(tmp_path) == config
    path = tmp_path / "bootstrap.toml"
    path.write_text(path.read_text().replace("format = 1", "format = 9"))
    with pytest.raises(InputError, match="work dir format 9"):
        load_config(tmp_path)
    with pytest.raises(InputError, match="not a bootstrap work dir"):
        load_config(tmp_path / "elsewhere")


def test_check_names_the_debian_package_of_each_missing_tool(cli, monkeypatch, tmp_path: Path) -> None:
    # Only apt-get and gpgv are on PATH: every other prerequisite is reported with its package.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "gpgv"):
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = cli("bootstrap", "check", "--target", "aarch64", "--work", tmp_path / "none")
    assert result.code == 1
    assert "qemu-aarch64-static    MISSING: apt-get install qemu-user-static" in result.out
    assert "systemd-repart         MISSING: apt-get install systemd" in result.out
    assert f"apt-get                {bin_dir / 'apt-get'}" in result.out
    report = json.loads(
        cli("bootstrap", "check", "--target", "aarch64", "--work", tmp_path / "none", "--json").out
    )
    missing = {p["tool"]: p["debian_package"] for p in report["prerequisites"] if p["found"] is None}
    assert missing["patch"] == "patch" and missing["qemu-system-aarch64"] == "qemu-system-arm"
    assert report["ok"] is False
