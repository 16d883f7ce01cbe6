"""Install, update, remove, list, queries, config files, conflicts, verify/restore, gc: real packages."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conary.runtime import install_packages, list_installed, verify
from helpers_runtime import Keys, build, expected_tree, make_keys, new_root, snapshot_tree

ALPHA1 = {
    "usr/bin/alpha": ("file", b"echo alpha 1\n", 0o755),
    "usr/share/alpha/data.txt": b"alpha data " * 3000,  # chunked (over 16 KiB)
    "usr/share/alpha/same.txt": b"shared bytes\n",
    "usr/share/alpha/link": ("symlink", "data.txt"),
    "etc/alpha.conf": b"setting = 1\n",
}
ALPHA2 = {
    "usr/bin/alpha": ("file", b"echo alpha 2\n", 0o755),
    "usr/share/alpha/data.txt": b"alpha data v2 " * 3000,
    "usr/share/alpha/new.txt": b"only in 2\n",
    "etc/alpha.conf": b"setting = 2\n",
}
BETA = {
    "usr/bin/beta": ("file", b"echo beta\n", 0o755),
    "usr/share/alpha/same.txt": b"shared bytes\n",  # same path, same content as alpha 1: shared
}
CLASH = {"usr/bin/alpha": ("file", b"something else\n", 0o755)}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("pkgs")
    return {
        "alpha1": build(work, keys, "alpha", "1.0", ALPHA1),
        "alpha2": build(work, keys, "alpha", "2.0", ALPHA2),
        "beta": build(work, keys, "beta", "1.0", BETA),
        "clash": build(work, keys, "clash", "1.0", CLASH),
    }


@pytest.fixture
def root(tmp_path: Path, keys: Keys) -> Path:
    return new_root(tmp_path / "root", keys)


def test_init_creates_wal_database_and_store(tmp_path: Path, cli) -> None:
    root = tmp_path / "r"
    root.mkdir()
    r = cli("--root", root, "system", "init")
    assert r.code == 0, r.err
    db = root / "var/lib/conary/conary.db"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] >= 1
    assert (root / "conary/objects").is_dir()
    assert cli("system", "init", "--root", root).code == 0  # --root after the subcommand, idempotent


def test_newer_schema_is_refused(root: Path, cli) -> None:
    conn = sqlite3.connect(root / "var/lib/conary/conary.db")
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    r = cli("--root", root, "list")
    assert r.code == 1
    assert "schema version 999 is newer" in r.err


def test_uninitialised_root_is_a_clear_error(tmp_path: Path, cli) -> None:
    r = cli("--root", tmp_path, "list")
    assert r.code == 1 and "system init" in r.err


def test_install_update_remove_exact_trees(root: Path, pkgs: dict[str, Path], cli) -> None:
    base = snapshot_tree(root)
    r = cli("--root", root, "install", pkgs["alpha1"])
    assert r.code == 0, r.err
    assert snapshot_tree(root) == expected_tree(base, ALPHA1)
    r = cli("install", pkgs["beta"], "--root", root)
    assert r.code == 0, r.err
    assert snapshot_tree(root) == expected_tree(base, ALPHA1, BETA)
    r = cli("--root", root, "update", pkgs["alpha2"])
    assert r.code == 0, r.err
    assert snapshot_tree(root) == expected_tree(base, ALPHA2, BETA)
    r = cli("--root", root, "list", "--json")
    listed = {p["name"]: p["version"] for p in json.loads(r.out)}
    assert listed == {"alpha": "2.0", "beta": "1.0"}
    r = cli("--root", root, "remove", "alpha")
    assert r.code == 0, r.err
    assert snapshot_tree(root) == expected_tree(base, BETA)
    r = cli("--root", root, "remove", "beta")
    assert r.code == 0, r.err
    assert snapshot_tree(root) == base
    assert cli("--root", root, "system", "verify").code == 0


def test_dry_run_prints_the_plan_and_changes_nothing(root: Path, pkgs: dict[str, Path], cli) -> None:
    before = snapshot_tree(root, exclude=())
    r = cli("--root", root, "install", "--dry-run", pkgs["alpha1"])
    assert r.code == 0, r.err
    assert "add     usr/bin/alpha" in r.out and "dry run" in r.out
    r = cli("--root", root, "install", "--dry-run", "--json", pkgs["alpha1"])
    plan = json.loads(r.out)
    assert plan["dry_run"] is True and plan["packages"][0]["action"] == "install"
    assert snapshot_tree(root, exclude=("var/lib/conary",)) == {
        k: v for k, v in before.items() if not k.startswith("var/lib/conary")
    }
    assert list_installed(root) == []
    assert list((root / "conary/objects").rglob("*/*")) == []  # not even the content store
    db = sqlite3.connect(root / "var/lib/conary/conary.db")
    assert db.execute("SELECT COUNT(*) FROM manifests").fetchone()[0] == 0


def test_shared_paths_are_refcounted(root: Path, pkgs: dict[str, Path], cli) -> None:
    base = snapshot_tree(root)
    assert cli("--root", root, "install", pkgs["alpha1"], pkgs["beta"]).code == 0
    assert cli("--root", root, "query", "owner", "/usr/share/alpha/same.txt").out.split() == ["alpha", "beta"]
    assert cli("--root", root, "remove", "alpha").code == 0
    assert snapshot_tree(root) == expected_tree(base, BETA)  # shared file and its dirs stay
    assert cli("--root", root, "remove", "beta").code == 0
    assert snapshot_tree(root) == base


def test_conflicting_content_is_refused(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    before = snapshot_tree(root)
    r = cli("--root", root, "install", pkgs["clash"])
    assert r.code == 1
    assert "both install usr/bin/alpha" in r.err
    assert snapshot_tree(root) == before


def test_unowned_file_in_the_way_is_refused(root: Path, pkgs: dict[str, Path], cli) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/alpha").write_text("mine\n")
    r = cli("--root", root, "install", pkgs["alpha1"])
    assert r.code == 1 and "no package owns it" in r.err
    assert (root / "usr/bin/alpha").read_text() == "mine\n"


def test_config_files_keep_local_edits(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    (root / "etc/alpha.conf").write_text("local edit\n")
    r = cli("--root", root, "update", pkgs["alpha2"])
    assert r.code == 0, r.err
    assert (root / "etc/alpha.conf").read_text() == "local edit\n"
    assert (root / "etc/alpha.conf.conarynew").read_bytes() == ALPHA2["etc/alpha.conf"]
    assert cli("--root", root, "system", "verify").code == 0  # edited config files are expected


def test_unmodified_config_is_replaced(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    assert cli("--root", root, "update", pkgs["alpha2"]).code == 0
    assert (root / "etc/alpha.conf").read_bytes() == ALPHA2["etc/alpha.conf"]
    assert not (root / "etc/alpha.conf.conarynew").exists()


def test_verify_and_restore(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    good = snapshot_tree(root)
    (root / "usr/bin/alpha").write_text("tampered\n")
    (root / "usr/share/alpha/data.txt").unlink()
    (root / "usr/share/alpha/link").unlink()
    (root / "usr/share/alpha/link").symlink_to("/elsewhere")
    r = cli("--root", root, "system", "verify")
    assert r.code == 1
    assert "usr/bin/alpha: content differs" in r.out
    assert "usr/share/alpha/data.txt: missing" in r.out
    assert "symlink points to '/elsewhere'" in r.out
    r = cli("--root", root, "system", "restore", "alpha")
    assert r.code == 0, r.err
    assert snapshot_tree(root) == good
    assert cli("--root", root, "system", "verify", "alpha").code == 0


def test_verify_reports_a_corrupt_store_object(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    objects = [p for p in (root / "conary/objects").rglob("*") if p.is_file()]
    victim = objects[0]
    victim.chmod(0o644)
    victim.write_bytes(b"rot")
    r = cli("--root", root, "system", "verify", "--json")
    assert r.code == 1
    assert any("content store object is corrupt" in p["problem"] for p in json.loads(r.out))


def test_untrusted_packages_need_allow_untrusted(tmp_path: Path, pkgs: dict[str, Path], cli) -> None:
    root = tmp_path / "r"
    root.mkdir()
    assert cli("--root", root, "system", "init").code == 0
    r = cli("--root", root, "install", pkgs["alpha1"])
    assert r.code == 1 and "--allow-untrusted" in r.err
    other = make_keys(tmp_path / "other")
    from helpers_runtime import trust

    trust(root, other)
    r = cli("--root", root, "install", pkgs["alpha1"])
    assert r.code == 1 and "untrusted key" in r.err
    assert cli("--root", root, "install", "--allow-untrusted", pkgs["alpha1"]).code == 0


def test_components_install_and_remove(tmp_path: Path, keys: Keys, cli) -> None:
    spec = {"usr/bin/tool": ("file", b"tool\n", 0o755), "usr/include/tool.h": b"int tool;\n"}
    pkg = build(tmp_path, keys, "tool", "1", spec)
    root = new_root(tmp_path / "root", keys)
    base = snapshot_tree(root)
    assert cli("--root", root, "install", pkg).code == 0
    assert snapshot_tree(root) == expected_tree(base, {"usr/bin/tool": spec["usr/bin/tool"]})
    installed = list_installed(root)
    assert installed[0].components == ("runtime",)
    assert cli("--root", root, "remove", "tool:runtime").code == 0
    assert list_installed(root) == []


def test_queries(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"], pkgs["beta"]).code == 0
    r = cli("--root", root, "query", "files", "beta", "--json")
    files = {f["path"] for f in json.loads(r.out) if f["type"] != "dir"}
    assert files == {"/usr/bin/beta", "/usr/share/alpha/same.txt"}
    r = cli("--root", root, "query", "whatprovides", "alpha")
    assert r.out.split() == ["alpha"]
    r = cli("--root", root, "query", "owner", "/usr/bin/beta")
    assert r.out.split() == ["beta"]
    assert cli("--root", root, "query", "owner", "/nope").code == 1
    r = cli("--root", root, "query", "depends", "alpha", "--json")
    assert r.code == 0 and isinstance(json.loads(r.out), list)
    assert cli("--root", root, "query", "rdepends", "alpha").code == 0


def test_states_list_diff_and_gc(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    assert cli("--root", root, "update", pkgs["alpha2"]).code == 0
    states = json.loads(cli("--root", root, "system", "state", "list", "--json").out)
    assert [s["number"] for s in states] == [0, 1, 2]
    assert set(states[2]) == {"number", "created", "summary", "packages"}
    assert states[2]["packages"][0]["version"] == "2.0"
    diff = json.loads(cli("--root", root, "system", "state", "diff", "1", "2", "--json").out)
    assert "usr/share/alpha/new.txt" in diff["files_added"]
    assert "usr/bin/alpha" in diff["files_changed"]
    # Every state is retained: gc keeps alpha 1's content so state 1 can come back.
    r = cli("--root", root, "system", "gc", "--json")
    assert json.loads(r.out)["objects_removed"] == 0
    r = cli("--root", root, "system", "gc", "--keep-states", "1", "--json")
    report = json.loads(r.out)
    assert report["states_dropped"] == [0, 1] and report["objects_removed"] > 0
    assert verify(root) == []
    r = cli("--root", root, "system", "state", "rollback", "1")
    assert r.code == 2 and "no state 1" in r.err


def test_removing_a_required_package_is_refused(tmp_path: Path, keys: Keys, cli) -> None:
    lib = build(tmp_path, keys, "libthing", "1", {"usr/share/thing/x": b"x\n"})
    app = build(tmp_path, keys, "app", "1", {"usr/bin/app": ("file", b"#!/usr/share/thing/x\n", 0o755)})
    root = new_root(tmp_path / "root", keys)
    r = cli("--root", root, "install", app)
    assert r.code == 1 and "unmet requirements" in r.err
    assert cli("--root", root, "install", app, lib).code == 0
    r = cli("--root", root, "remove", "libthing")
    assert r.code == 1 and "app needs" in r.err
    assert cli("--root", root, "remove", "--nodeps", "libthing").code == 0


def test_api_installs_into_a_fresh_directory(tmp_path: Path, pkgs: dict[str, Path], keys: Keys) -> None:
    from conary.ccs import load_public_key

    root = tmp_path / "fresh"
    outcome = install_packages(
        root, [pkgs["alpha1"], pkgs["beta"]], trusted_keys=[load_public_key(keys.public)]
    )
    assert outcome.state == 1
    assert snapshot_tree(root) == expected_tree(
        snapshot_tree(root, exclude=("var/lib/conary", "conary", "usr", "etc")), ALPHA1, BETA
    )


def test_install_and_update_by_name_from_a_repository(tmp_path: Path, keys: Keys, cli) -> None:
    from conary.ccs import load_signing_key
    from conary.runtime.index import write_index

    repo = tmp_path / "repo"
    v1 = build(tmp_path / "b1", keys, "named", "1.0", {"usr/bin/named": ("file", b"1\n", 0o755)})
    repo.mkdir()
    (repo / v1.name).write_bytes(v1.read_bytes())
    write_index(repo, load_signing_key(keys.secret))
    root = new_root(tmp_path / "root", keys)
    assert cli("--root", root, "repo", "add", "local", repo).code == 0
    r = cli("--root", root, "install", "named")
    assert r.code == 0, r.err
    assert (root / "usr/bin/named").read_bytes() == b"1\n"
    v2 = build(tmp_path / "b2", keys, "named", "2.0", {"usr/bin/named": ("file", b"2\n", 0o755)})
    (repo / v2.name).write_bytes(v2.read_bytes())
    write_index(repo, load_signing_key(keys.secret))
    cli("--root", root, "repo", "sync")
    r = cli("--root", root, "update")
    assert r.code == 0, r.err
    assert (root / "usr/bin/named").read_bytes() == b"2\n"
    assert cli("--root", root, "update").out.strip() == "nothing to do"


def test_update_refuses_to_downgrade(root: Path, pkgs: dict[str, Path], cli) -> None:
    assert cli("--root", root, "install", pkgs["alpha2"]).code == 0
    r = cli("--root", root, "update", pkgs["alpha1"])
    assert r.code == 2 and "older than the installed" in r.err
    assert cli("--root", root, "install", pkgs["alpha1"]).code == 0
    assert list_installed(root)[0].version == "1.0"
