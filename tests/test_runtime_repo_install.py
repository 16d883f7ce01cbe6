"""Install by name through real repositories: signed indexes, trusted keys, soname resolution.

The packages are real: a C library and a program compiled here, packed and signed with
build_package; the http repository is a threaded http.server on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from tests.helpers_runtime_repo import build_test_packages, http_server

from conary.ccs import Dependency, generate_keypair, load_signing_key
from conary.errors import ConaryError, InputError
from conary.runtime.index import INDEX_NAME, SIGNATURE_NAME, RepoIndexError, write_index
from conary.runtime.keys import add_key, list_keys, remove_key, trusted_keys
from conary.runtime.repo import RepoError, add_repo, list_repos, sync
from conary.runtime.resolver import ResolveError, resolve


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Keys, three signed packages in an indexed directory, and a copy signed by a stranger."""
    base = tmp_path_factory.mktemp("repo-world")
    priv, pub = generate_keypair(base / "keys/publisher")
    other_priv, other_pub = generate_keypair(base / "keys/stranger")
    packages = build_test_packages(base, priv)
    repo = base / "repo"
    write_index(repo, load_signing_key(priv))
    stranger = base / "stranger"
    build_test_packages(stranger, other_priv)
    write_index(stranger / "repo", load_signing_key(priv))  # index by the publisher, packages by a stranger
    return {
        "priv": priv,
        "pub": pub,
        "other_priv": other_priv,
        "other_pub": other_pub,
        "repo": repo,
        "packages": packages,
        "stranger_repo": stranger / "repo",
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


def _copy_repo(world: dict, tmp_path: Path) -> Path:
    dest = tmp_path / "repo-copy"
    shutil.copytree(world["repo"], dest)
    return dest


def test_index_lists_each_package_with_digest_and_dependencies(world: dict) -> None:
    doc = json.loads((world["repo"] / INDEX_NAME).read_bytes())
    assert doc["format"] == "conary-repo-index" and doc["format_version"] == 1
    by_name = {p["name"]: p for p in doc["packages"]}
    assert sorted(by_name) == ["app", "hostlibc", "libfoo"]
    app = by_name["app"]
    assert app["file"] == "app-1.0-1.x86_64.ccs"
    assert app["nevra"] == "app-1.0-1.x86_64"
    assert app["size"] == world["packages"]["app"].stat().st_size
    assert ["soname", "libfoo.so.1(x86-64)", ""] in app["requires"]
    assert ["soname", "libfoo.so.1(x86-64)", ""] in by_name["libfoo"]["provides"]
    assert "devel" in by_name["libfoo"]["components"]
    sig = json.loads((world["repo"] / SIGNATURE_NAME).read_bytes())
    assert sig["algorithm"] == "ed25519"
    assert sig["key_id"] == load_signing_key(world["priv"]).key_id


def test_index_is_deterministic(world: dict, tmp_path: Path) -> None:
    repo = _copy_repo(world, tmp_path)
    before = ((repo / INDEX_NAME).read_bytes(), (repo / SIGNATURE_NAME).read_bytes())
    write_index(repo, load_signing_key(world["priv"]))
    assert ((repo / INDEX_NAME).read_bytes(), (repo / SIGNATURE_NAME).read_bytes()) == before
    assert not [p.name for p in repo.iterdir() if p.name.startswith(".")]  # no temp files left


def test_install_by_name_from_a_directory_resolves_the_soname(world: dict, root: Path) -> None:
    add_key(root, world["pub"])
    add_repo(root, "local", str(world["repo"]))
    paths = resolve(root, ["app"], installed=None)
    assert [p.name for p in paths] == [
        "hostlibc-2.36-1.x86_64.ccs",
        "libfoo-1.0-1.x86_64.ccs",
        "app-1.0-1.x86_64.ccs",
    ]
    assert all(p.parent == world["repo"] for p in paths)


def test_install_by_name_from_http_resolves_the_soname_and_downloads(world: dict, root: Path) -> None:
    add_key(root, world["pub"])
    with http_server(world["repo"]) as url:
        add_repo(root, "web", url)
        [result] = sync(root)
        assert (result.repo.name, result.packages) == ("web", 3)
        installed = [_Provides("hostlibc")]  # the root already has a libc: only two are fetched
        paths = resolve(root, ["app"], installed)
    assert [p.name for p in paths] == ["libfoo-1.0-1.x86_64.ccs", "app-1.0-1.x86_64.ccs"]
    cache = root / "var/cache/conary/packages"
    assert all(p.parent == cache for p in paths)
    for path in paths:
        assert path.read_bytes() == (world["repo"] / path.name).read_bytes()
    assert (root / "var/lib/conary/repos/web" / INDEX_NAME).read_bytes() == (
        world["repo"] / INDEX_NAME
    ).read_bytes()


class _Provides:
    """An installed package, as the resolver sees one: name, version and what it provides."""

    def __init__(self, name: str) -> None:
        self.name, self.version, self.release = name, "2.36", "1"
        self.provides = (
            Dependency("soname", "libc.so.6(x86-64)"),
            Dependency("interpreter", "/lib64/ld-linux-x86-64.so.2"),
        )
        self.files = ()


def test_index_signed_by_an_untrusted_key_is_refused(world: dict, root: Path) -> None:
    add_key(root, world["other_pub"])
    add_repo(root, "local", str(world["repo"]))
    publisher = load_signing_key(world["priv"]).key_id
    with pytest.raises(RepoIndexError) as err:
        resolve(root, ["app"])
    assert f"index is signed by untrusted key {publisher}" in err.value.render()
    assert "conary key add" in err.value.render()
    with pytest.raises(RepoIndexError, match="untrusted key"):
        sync(root)


def test_no_trusted_keys_at_all_is_refused(world: dict, root: Path) -> None:
    add_repo(root, "local", str(world["repo"]))
    with pytest.raises(ResolveError, match="no trusted keys"):
        resolve(root, ["app"])


def test_tampered_index_is_refused(world: dict, root: Path, tmp_path: Path) -> None:
    repo = _copy_repo(world, tmp_path)
    index = repo / INDEX_NAME
    index.write_bytes(index.read_bytes().replace(b'"version":"1.0"', b'"version":"1.1"', 1))
    add_key(root, world["pub"])
    add_repo(root, "local", str(repo))
    with pytest.raises(RepoIndexError) as err:
        resolve(root, ["app"])
    assert "index signature does not verify against key" in err.value.render()
    assert "tampered" in err.value.render()


def test_package_signed_by_an_untrusted_key_is_refused(world: dict, root: Path) -> None:
    add_key(root, world["pub"])
    add_repo(root, "stranger", str(world["stranger_repo"]))
    stranger = load_signing_key(world["other_priv"]).key_id
    with pytest.raises(RepoError) as err:
        resolve(root, ["app"])
    message = err.value.render()
    assert "package hostlibc-2.36-1.x86_64.ccs refused" in message
    assert f"signed by untrusted key {stranger}" in message


def test_package_swapped_after_indexing_is_refused(world: dict, root: Path, tmp_path: Path) -> None:
    repo = _copy_repo(world, tmp_path)
    shutil.copy(world["stranger_repo"] / "libfoo-1.0-1.x86_64.ccs", repo / "libfoo-1.0-1.x86_64.ccs")
    add_key(root, world["pub"])
    add_repo(root, "local", str(repo))
    with pytest.raises(RepoError, match=r"libfoo-1.0-1.x86_64.ccs does not match the index"):
        resolve(root, ["app"])


def test_tampered_http_index_is_refused_and_the_synced_copy_kept(
    world: dict, root: Path, tmp_path: Path
) -> None:
    repo = _copy_repo(world, tmp_path)
    add_key(root, world["pub"])
    with http_server(repo) as url:
        add_repo(root, "web", url)
        sync(root)
        good = (root / "var/lib/conary/repos/web" / INDEX_NAME).read_bytes()
        (repo / INDEX_NAME).write_bytes(good.replace(b"libfoo.so.1", b"libfoo.so.2"))
        with pytest.raises(RepoIndexError, match="index signature does not verify"):
            sync(root)
    assert (root / "var/lib/conary/repos/web" / INDEX_NAME).read_bytes() == good


def test_http_404_is_a_clear_error(world: dict, root: Path, tmp_path: Path) -> None:
    add_key(root, world["pub"])
    with http_server(tmp_path) as url:
        add_repo(root, "web", f"{url}/nothing-here")
        with pytest.raises(RepoError) as err:
            sync(root)
    assert f"not found: HTTP 404 for {url}/nothing-here/index.json" in err.value.render()


def test_unreachable_server_is_a_clear_error(world: dict, root: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    add_key(root, world["pub"])
    add_repo(root, "down", f"http://127.0.0.1:{port}")
    with pytest.raises(RepoError) as err:
        resolve(root, ["app"])
    assert f"cannot reach http://127.0.0.1:{port}/index.json" in err.value.render()


def test_missing_package_name_is_precise(world: dict, root: Path) -> None:
    add_key(root, world["pub"])
    add_repo(root, "local", str(world["repo"]))
    with pytest.raises(ResolveError, match=r"no package named 'nope' \(requested\)"):
        resolve(root, ["nope"])


def test_no_repositories_is_precise(world: dict, root: Path) -> None:
    add_key(root, world["pub"])
    with pytest.raises(ResolveError, match="no enabled repositories"):
        resolve(root, ["app"])


def test_disabled_repository_is_not_used(world: dict, root: Path) -> None:
    add_key(root, world["pub"])
    add_repo(root, "local", str(world["repo"]))
    config = root / "etc/conary/repos.d/local.toml"
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    assert [r.enabled for r in list_repos(root)] == [False]
    with pytest.raises(ResolveError, match="no enabled repositories"):
        resolve(root, ["app"])


def test_repo_add_validates(world: dict, root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="invalid repository name"):
        add_repo(root, "../evil", str(world["repo"]))
    with pytest.raises(InputError, match="repository directory does not exist"):
        add_repo(root, "x", str(tmp_path / "missing"))
    with pytest.raises(InputError, match="unsupported repository URL scheme"):
        add_repo(root, "x", "ftp://example.org/repo")
    add_repo(root, "x", str(world["repo"]))
    with pytest.raises(InputError, match="already configured"):
        add_repo(root, "x", str(world["repo"]))


def test_keys_add_list_remove(world: dict, root: Path) -> None:
    key_id = add_key(root, world["pub"])
    assert (root / f"etc/conary/keys/{key_id}.pub").read_text().startswith("conary-ed25519-public ")
    assert [k.key_id for k in list_keys(root)] == [key_id]
    assert [k.key_id for k in trusted_keys(root)] == [key_id]
    assert add_key(root, world["priv"]) == key_id  # a secret key file gives its public half
    with pytest.raises(InputError, match="no trusted key"):
        remove_key(root, "ffff0000")
    remove_key(root, key_id[:8])
    assert list_keys(root) == []


def test_malformed_key_file_is_refused(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 AAAA\n")
    with pytest.raises(InputError, match="not a Conary key file"):
        add_key(root, bad)
    (root / "etc/conary/keys").mkdir(parents=True)
    (root / "etc/conary/keys/0123456789abcdef.pub").write_text("garbage\n")
    with pytest.raises(ConaryError, match="unreadable trusted key"):
        trusted_keys(root)


def test_sync_tries_every_repository_and_reports_the_failure(world: dict, root: Path, tmp_path: Path) -> None:
    add_key(root, world["pub"])
    with http_server(tmp_path) as url:
        add_repo(root, "broken", f"{url}/missing")
        add_repo(root, "good", str(world["repo"]))
        with pytest.raises(RepoError, match="not found: HTTP 404"):
            sync(root)
    assert (root / "var/lib/conary/repos/good" / INDEX_NAME).is_file()
    assert not (root / "var/lib/conary/repos/broken").exists()


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_pkgconfig_binary_and_file_requirements_from_real_scans(
    world: dict, root: Path, tmp_path: Path
) -> None:
    from conary.ccs import PackageMeta, build_package

    trees = {name: tmp_path / f"tree-{name}" for name in ("bar", "baz", "frob", "envtool", "tools")}
    (trees["bar"] / "usr/lib/pkgconfig").mkdir(parents=True)
    (trees["bar"] / "usr/lib/pkgconfig/bar.pc").write_text("Name: bar\nVersion: 1.2\nDescription: bar\n")
    (trees["baz"] / "usr/lib/pkgconfig").mkdir(parents=True)
    (trees["baz"] / "usr/lib/pkgconfig/baz.pc").write_text(
        "Name: baz\nVersion: 0.1\nDescription: baz\nRequires: bar >= 1.0\n"
    )
    _exe(trees["frob"] / "usr/bin/frobnicate", "#!/bin/sh\necho frob\n")
    _exe(trees["envtool"] / "usr/bin/env", '#!/bin/sh\nexec "$@"\n')
    _exe(trees["tools"] / "usr/bin/runner", "#!/usr/bin/env frobnicate\n")
    repo = tmp_path / "scanrepo"
    for name, tree in trees.items():
        build_package(tree, PackageMeta(name, "1.0"), output_dir=repo, signing_key=world["priv"])
    write_index(repo, load_signing_key(world["priv"]))
    add_key(root, world["pub"])
    add_repo(root, "scan", str(repo))
    # /bin/sh (the frob and env scripts' interpreter) is already in the root.
    installed = [Dependency("file", "/bin/sh")]
    assert [p.name for p in resolve(root, ["baz"], installed)] == [
        "bar-1.0-1.x86_64.ccs",
        "baz-1.0-1.x86_64.ccs",
    ]
    assert sorted(p.name for p in resolve(root, ["tools"], installed)) == [
        "envtool-1.0-1.x86_64.ccs",
        "frob-1.0-1.x86_64.ccs",
        "tools-1.0-1.x86_64.ccs",
    ]
    with pytest.raises(ResolveError, match=r"nothing provides file\(/bin/sh\) \(needed by "):
        resolve(root, ["tools"], [])


def test_package_missing_on_the_http_server_is_a_clear_error(world: dict, root: Path, tmp_path: Path) -> None:
    repo = _copy_repo(world, tmp_path)
    (repo / "libfoo-1.0-1.x86_64.ccs").unlink()
    add_key(root, world["pub"])
    with http_server(repo) as url:
        add_repo(root, "web", url)
        with pytest.raises(RepoError) as err:
            resolve(root, ["app"])
    assert f"not found: HTTP 404 for {url}/libfoo-1.0-1.x86_64.ccs" in err.value.render()
    assert "libfoo-1.0-1.x86_64 from repository web" in err.value.render()
