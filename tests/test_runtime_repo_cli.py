"""`conary key`, `conary repo` and install by name through the CLI, end to end in a real root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.helpers_runtime_repo import build_test_packages, http_server, make_shell_root, tree_snapshot

from conary.ccs import generate_keypair, load_signing_key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("cli-keys") / "publisher")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> Path:
    """A directory with hostlibc, libfoo and app (built, not yet indexed)."""
    base = tmp_path_factory.mktemp("cli-packages")
    build_test_packages(base, keys[0])
    return base / "repo"


def _repo_copy(packages: Path, tmp_path: Path, cli, key: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(packages, repo)
    r = cli("repo", "index", repo, "--key", key)
    assert r.code == 0, r.err
    assert "indexed 3 packages" in r.out
    return repo


def _system_root(tmp_path: Path, cli) -> Path:
    root = make_shell_root(tmp_path / "root")
    shutil.copy2("/usr/sbin/ldconfig", root / "usr/sbin/ldconfig")
    r = cli("--root", root, "system", "init")
    assert r.code == 0, r.err
    return root


def test_key_commands(cli, keys: tuple[Path, Path], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    key_id = load_signing_key(keys[0]).key_id
    r = cli("--root", root, "key", "add", keys[1])
    assert (r.code, r.err.strip()) == (0, f"conary: trusted key {key_id}")
    r = cli("key", "list", "--json", "--root", root)
    assert r.code == 0
    assert [k["key_id"] for k in json.loads(r.out)] == [key_id]
    r = cli("--root", root, "key", "list")
    assert r.out.startswith(f"{key_id}  ed25519  ")
    r = cli("--root", root, "key", "remove", "nothex")
    assert r.code == 2 and "no trusted key with id 'nothex'" in r.err
    assert cli("--root", root, "key", "remove", key_id).code == 0
    assert json.loads(cli("--root", root, "key", "list", "--json").out) == []


def test_repo_commands(cli, keys: tuple[Path, Path], packages: Path, tmp_path: Path) -> None:
    repo = _repo_copy(packages, tmp_path, cli, keys[0])
    root = tmp_path / "root"
    root.mkdir()
    assert cli("--root", root, "key", "add", keys[1]).code == 0
    r = cli("--root", root, "repo", "add", "local", repo)
    assert r.code == 0, r.err
    r = cli("--root", root, "repo", "list", "--json")
    assert json.loads(r.out) == [{"name": "local", "url": str(repo), "enabled": True, "kind": "dir"}]
    r = cli("--root", root, "repo", "sync", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == [{"name": "local", "packages": 3, "signer": load_signing_key(keys[0]).key_id}]
    r = cli("--root", root, "repo", "add", "local", repo)
    assert r.code == 2 and "already configured" in r.err
    r = cli("--root", root, "repo", "sync", "nope")
    assert r.code == 2 and "no repository named 'nope'" in r.err


def test_repo_disable_enable_and_remove(cli, keys: tuple[Path, Path], packages: Path, tmp_path: Path) -> None:
    repo = _repo_copy(packages, tmp_path, cli, keys[0])
    root = _system_root(tmp_path, cli)
    assert cli("--root", root, "key", "add", keys[1]).code == 0
    assert cli("--root", root, "repo", "add", "local", repo).code == 0
    assert cli("--root", root, "repo", "sync").code == 0
    synced = root / "var/lib/conary/repos/local"
    assert synced.is_dir()

    r = cli("--root", root, "repo", "disable", "local")
    assert (r.code, r.err.strip()) == (0, "conary: disabled: repository local")
    assert json.loads(cli("--root", root, "repo", "list", "--json").out)[0]["enabled"] is False
    r = cli("--root", root, "repo", "disable", "local")
    assert r.code == 0 and "already disabled" in r.err
    r = cli("--root", root, "install", "app")  # nothing to resolve from
    assert r.code == 1
    assert "no enabled repositories (hint: enable one with 'conary repo enable NAME' (disabled: local))" in (
        r.err
    )
    r = cli("--root", root, "repo", "sync", "--json")
    assert r.code == 0 and json.loads(r.out) == []

    r = cli("--root", root, "repo", "enable", "local", "--dry-run")
    assert r.code == 0 and "would be enabled" in r.err
    assert json.loads(cli("--root", root, "repo", "list", "--json").out)[0]["enabled"] is False
    assert cli("--root", root, "repo", "enable", "local").code == 0
    assert cli("--root", root, "install", "app").code == 0

    before = tree_snapshot(root)
    r = cli("--root", root, "repo", "remove", "local", "--dry-run")
    assert r.code == 0 and "would remove repository local" in r.err
    assert tree_snapshot(root) == before
    r = cli("--root", root, "repo", "remove", "local")
    assert (r.code, r.err.strip()) == (0, f"conary: removed repository local (dir: {repo})")
    assert json.loads(cli("--root", root, "repo", "list", "--json").out) == []
    assert not synced.exists()
    assert (root / "usr/bin/app").is_file()  # installed packages stay
    for verb in ("remove", "enable", "disable"):
        r = cli("--root", root, "repo", verb, "local")
        assert r.code == 2 and "no repository named 'local'" in r.err and "conary repo list" in r.err
    r = cli("--root", root, "repo", "remove", "../etc")
    assert r.code == 2 and "no repository named" in r.err


def test_repo_index_without_a_key_names_the_fix(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "no-keys"))
    (tmp_path / "d").mkdir()
    r = cli("repo", "index", tmp_path / "d")
    assert r.code == 2
    assert "no signing key given and no default key exists" in r.err


def test_untrusted_index_refused_through_cli(
    cli, keys: tuple[Path, Path], packages: Path, tmp_path: Path
) -> None:
    repo = _repo_copy(packages, tmp_path, cli, keys[0])
    _, stranger_pub = generate_keypair(tmp_path / "stranger")
    root = _system_root(tmp_path, cli)
    assert cli("--root", root, "key", "add", stranger_pub).code == 0
    assert cli("--root", root, "repo", "add", "local", repo).code == 0
    before = tree_snapshot(root)
    r = cli("--root", root, "install", "app")
    assert r.code == 1
    assert f"index is signed by untrusted key {load_signing_key(keys[0]).key_id}" in r.err
    assert tree_snapshot(root) == before


@pytest.mark.parametrize("transport", ["dir", "http"])
def test_install_by_name_resolves_soname_runs_ldconfig_and_the_program_works(
    cli, keys: tuple[Path, Path], packages: Path, tmp_path: Path, transport: str
) -> None:
    repo = _repo_copy(packages, tmp_path, cli, keys[0])
    root = _system_root(tmp_path, cli)
    assert cli("--root", root, "key", "add", keys[1]).code == 0
    with http_server(repo) as url:
        location = url if transport == "http" else str(repo)
        assert cli("--root", root, "repo", "add", "main", location).code == 0
        r = cli("--root", root, "install", "app", "--sandbox", "always", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["triggers"] == ["ldconfig"]
    assert (root / "usr/bin/app").is_file()
    assert (root / "usr/lib/libfoo.so.1").is_file()
    assert (root / "usr/lib/x86_64-linux-gnu/libc.so.6").is_file()
    listed = json.loads(cli("--root", root, "list", "--json").out)
    assert sorted(p["name"] for p in listed) == ["app", "hostlibc", "libfoo"]
    # The ldconfig trigger ran once, chrooted: the cache in the root knows libfoo.
    assert b"libfoo.so.1" in (root / "etc/ld.so.cache").read_bytes()
    # And the program the repository delivered runs in the root against the library it pulled in.
    run = subprocess.run(["chroot", str(root), "/usr/bin/app"], capture_output=True, text=True, check=False)
    assert (run.returncode, run.stdout) == (0, "42\n")
    if transport == "http":
        cache = root / "var/cache/conary/packages"
        assert sorted(os.listdir(cache)) == [
            "app-1.0-1.x86_64.ccs",
            "hostlibc-2.36-1.x86_64.ccs",
            "libfoo-1.0-1.x86_64.ccs",
        ]
        # gc clears the download cache: the content is in the store, and the program still runs
        cached_bytes = sum(p.stat().st_size for p in cache.iterdir())
        r = cli("--root", root, "system", "gc", "--dry-run", "--json")
        assert json.loads(r.out)["cached_packages_removed"] == 3 and len(os.listdir(cache)) == 3
        r = cli("--root", root, "system", "gc", "--json")
        report = json.loads(r.out)
        assert report["cached_packages_removed"] == 3 and report["bytes_freed"] >= cached_bytes
        assert os.listdir(cache) == []
        run = subprocess.run(["chroot", str(root), "/usr/bin/app"], capture_output=True, text=True)
        assert (run.returncode, run.stdout) == (0, "42\n")
        assert cli("--root", root, "system", "verify").code == 0


def test_tampered_index_refused_through_cli(
    cli, keys: tuple[Path, Path], packages: Path, tmp_path: Path
) -> None:
    repo = _repo_copy(packages, tmp_path, cli, keys[0])
    index = repo / "index.json"
    index.write_bytes(index.read_bytes().replace(b'"release":"1"', b'"release":"2"', 1))
    root = _system_root(tmp_path, cli)
    assert cli("--root", root, "key", "add", keys[1]).code == 0
    with http_server(repo) as url:
        assert cli("--root", root, "repo", "add", "web", url).code == 0
        r = cli("--root", root, "repo", "sync")
    assert r.code == 1
    assert "index signature does not verify against key" in r.err
    assert not (root / "var/lib/conary/repos/web/index.json").exists()


def test_reinstall_is_a_no_op_and_update_picks_the_newer_version(
    cli, keys: tuple[Path, Path], packages: Path, tmp_path: Path
) -> None:
    from conary.ccs import PackageMeta, build_package, open_package

    repo = _repo_copy(packages, tmp_path, cli, keys[0])
    root = _system_root(tmp_path, cli)
    assert cli("--root", root, "key", "add", keys[1]).code == 0
    assert cli("--root", root, "repo", "add", "main", repo).code == 0
    assert cli("--root", root, "install", "app").code == 0
    r = cli("--root", root, "install", "app", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["state"] is None  # nothing to do: the same app, its libraries installed

    # Publish app 1.1 (same program) and re-index: update by name takes it.
    tree = tmp_path / "tree-app"
    with open_package(repo / "app-1.0-1.x86_64.ccs") as pkg:
        pkg.extract(tree)
    build_package(tree, PackageMeta("app", "1.1"), output_dir=repo, signing_key=keys[0], split_debug=False)
    assert cli("repo", "index", repo, "--key", keys[0]).code == 0
    r = cli("--root", root, "update", "app", "--json")
    assert r.code == 0, r.err
    versions = {p["name"]: p["version"] for p in json.loads(cli("--root", root, "list", "--json").out)}
    assert versions == {"app": "1.1", "hostlibc": "2.36", "libfoo": "1.0"}
    r = cli("--root", root, "install", "app=1.0", "--json")
    assert r.code == 0, r.err
    versions = {p["name"]: p["version"] for p in json.loads(cli("--root", root, "list", "--json").out)}
    assert versions["app"] == "1.0"
