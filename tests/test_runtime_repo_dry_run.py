"""--dry-run on the configuration commands checks everything and changes nothing on disk."""

from __future__ import annotations

from pathlib import Path

from conary.ccs import generate_keypair
from conary.runtime.keys import list_keys
from conary.runtime.repo import list_repos
from conary.runtime.triggers import disabled_triggers
from helpers_runtime import snapshot_tree
from helpers_runtime_repo import build_test_packages


def _tree(path: Path) -> dict:
    return snapshot_tree(path, exclude=())


def test_dry_run_changes_nothing_then_the_real_run_does(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    assert cli("--root", root, "system", "init").code == 0
    key, pub = generate_keypair(tmp_path / "keys" / "k")
    repo_dir = tmp_path / "repo"
    build_test_packages(tmp_path / "work", key)
    (tmp_path / "work" / "repo").rename(repo_dir)

    cases = [
        ("key", "add", pub),
        ("repo", "index", repo_dir, "--key", key),
        ("system", "trigger", "disable", "ldconfig"),
    ]
    for args in cases:
        before_root, before_repo = _tree(root), _tree(repo_dir)
        r = cli("--root", root, *args, "--dry-run")
        assert r.code == 0, (args, r.err)
        assert _tree(root) == before_root, args
        assert _tree(repo_dir) == before_repo, args
    assert list_keys(root) == []
    assert not (repo_dir / "index.json").exists()
    assert disabled_triggers(root) == set()

    # The real runs do change things; the dry runs above were not no-ops by accident.
    assert cli("--root", root, "key", "add", pub).code == 0
    assert cli("--root", root, "repo", "index", repo_dir, "--key", key).code == 0
    assert cli("--root", root, "repo", "add", "local", repo_dir, "--dry-run").code == 0
    assert list_repos(root) == []
    assert cli("--root", root, "repo", "add", "local", repo_dir).code == 0
    assert [r.name for r in list_repos(root)] == ["local"]

    before = _tree(root)
    r = cli("--root", root, "repo", "sync", "--dry-run")
    assert r.code == 0, r.err
    assert "dry run" in r.out
    assert _tree(root) == before
    assert cli("--root", root, "repo", "sync").code == 0
    assert _tree(root) != before

    key_id = list_keys(root)[0].key_id
    assert cli("--root", root, "key", "remove", key_id, "--dry-run").code == 0
    assert [k.key_id for k in list_keys(root)] == [key_id]
    assert cli("--root", root, "key", "remove", key_id).code == 0
    assert list_keys(root) == []
