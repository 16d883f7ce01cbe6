"""Hostile packages and hostile roots: nothing may be written outside the root, ever."""

from __future__ import annotations

from pathlib import Path

import pytest

from conary.ccs import FileEntry, Manifest
from conary.runtime.errors import UnsafePathError
from conary.runtime.model import Selected, build_filemap
from conary.runtime.safefs import RootFS
from helpers_runtime import Keys, build, make_keys, new_root, snapshot_tree, write_raw_package


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0\n")
    return outside


def _untouched(sentinel: Path, before: dict) -> bool:
    return snapshot_tree(sentinel, exclude=()) == before


def test_dotdot_path_is_refused(tmp_path: Path, keys: Keys, sentinel: Path, cli) -> None:
    root = new_root(tmp_path / "root", keys)
    before, tree = snapshot_tree(sentinel, exclude=()), snapshot_tree(root)
    pkg = write_raw_package(tmp_path / "evil.ccs", keys, "evil", [("../outside/pwned", "file", b"gotcha\n")])
    r = cli("--root", root, "install", pkg)
    assert r.code == 1
    assert "'..' component" in r.err
    assert _untouched(sentinel, before) and snapshot_tree(root) == tree


def test_runtime_refuses_dotdot_on_its_own() -> None:
    entry = FileEntry("usr/../../outside", "file", 0o644, size=1, sha256="0" * 64, chunks=("0" * 64,))
    manifest = Manifest(1, "evil", "1", "1", "x86_64", {}, (entry,), (), (), ())
    with pytest.raises(UnsafePathError):
        build_filemap([Selected(1, manifest, ("runtime",))])


def test_runtime_refuses_its_own_state_dirs() -> None:
    entry = FileEntry("conary/objects/ab/cd", "file", 0o644, size=1, sha256="0" * 64, chunks=("0" * 64,))
    manifest = Manifest(1, "evil", "1", "1", "x86_64", {}, (entry,), (), (), ())
    with pytest.raises(UnsafePathError, match="runtime's own state"):
        build_filemap([Selected(1, manifest, ("runtime",))])


def test_symlink_out_of_root_then_file_beneath_it(tmp_path: Path, keys: Keys, sentinel: Path, cli) -> None:
    link = build(tmp_path, keys, "linker", "1", {"opt/evil": ("symlink", str(sentinel))})
    under = build(tmp_path, keys, "under", "1", {"opt/evil/pwned": b"gotcha\n"})
    root = new_root(tmp_path / "root", keys)
    before = snapshot_tree(sentinel, exclude=())
    assert cli("--root", root, "install", link).code == 0  # an absolute symlink is fine as a symlink
    assert (root / "opt/evil").is_symlink()
    tree = snapshot_tree(root)
    r = cli("--root", root, "install", under)
    assert r.code == 1
    assert "both install opt/evil" in r.err  # a directory where a symlink is
    # A crafted package that lists only the file, so opt/evil would be an implied directory.
    raw = write_raw_package(tmp_path / "raw.ccs", keys, "raw", [("opt/evil/pwned", "file", b"gotcha\n")])
    r = cli("--root", root, "install", raw)
    assert r.code == 1
    assert "installs as a symlink" in r.err
    assert _untouched(sentinel, before) and snapshot_tree(root) == tree
    # Both in one changeset: refused while planning.
    root2 = new_root(tmp_path / "root2", keys)
    r = cli("--root", root2, "install", link, under)
    assert r.code == 1
    assert _untouched(sentinel, before)


def test_symlink_already_in_the_root(tmp_path: Path, keys: Keys, sentinel: Path, cli) -> None:
    pkg = build(tmp_path, keys, "victim", "1", {"srv/data/file": b"payload\n", "srv/other": b"o\n"})
    root = new_root(tmp_path / "root", keys)
    (root / "srv").mkdir()
    (root / "srv/data").symlink_to(sentinel)
    before, tree = snapshot_tree(sentinel, exclude=()), snapshot_tree(root)
    r = cli("--root", root, "install", pkg)
    assert r.code == 1
    assert "the root has a symlink" in r.err
    raw = write_raw_package(tmp_path / "raw.ccs", keys, "raw", [("srv/data/file", "file", b"payload\n")])
    r = cli("--root", root, "install", raw)
    assert r.code == 1
    assert "the root has a symlink" in r.err
    assert _untouched(sentinel, before) and snapshot_tree(root) == tree


def test_symlink_planted_after_planning_stops_the_engine(tmp_path: Path, keys: Keys, sentinel: Path) -> None:
    """The engine does not trust the plan's view of the disk: its writes refuse symlinked parents."""
    from conary.ccs import load_public_key
    from conary.runtime import open_root
    from conary.runtime.operations import PackageSource, _content_sources, _load
    from conary.runtime.plan import make_plan

    pkg = build(tmp_path, keys, "late", "1", {"srv/data/file": b"payload\n"})
    root = new_root(tmp_path / "root", keys)
    before = snapshot_tree(sentinel, exclude=())
    with open_root(root) as session:
        loaded = _load(session, [PackageSource(pkg)], {}, [load_public_key(keys.public)], False)
        after = {name: sel for name, (_, sel) in loaded.items()}
        plan = make_plan(session.fs, "install", 0, session.db.current_files(), {}, after)
        (root / "srv").mkdir(mode=0o755)
        (root / "srv/data").symlink_to(sentinel)  # the attacker wins the race for srv/data
        with pytest.raises((UnsafePathError, FileExistsError)):
            session.engine.run(plan, "never", *_content_sources(loaded))
    assert _untouched(sentinel, before)
    assert list((root / "var/lib/conary/journal").glob("*.json")) == []


def test_symlinked_root_state_dir_is_refused(tmp_path: Path, keys: Keys, sentinel: Path, cli) -> None:
    root = tmp_path / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/conary").symlink_to(sentinel)
    before = snapshot_tree(sentinel, exclude=())
    r = cli("--root", root, "system", "init")
    assert r.code == 1
    assert _untouched(sentinel, before)


def test_replacing_a_symlink_never_writes_through_it(tmp_path: Path, keys: Keys, sentinel: Path, cli) -> None:
    v1 = build(tmp_path, keys, "swap", "1", {"etc/passwd": ("symlink", str(sentinel / "passwd"))})
    v2 = build(tmp_path, keys, "swap", "2", {"etc/passwd": b"root:x:0:0:new\n"})
    root = new_root(tmp_path / "root", keys)
    before = snapshot_tree(sentinel, exclude=())
    assert cli("--root", root, "install", v1).code == 0
    assert cli("--root", root, "update", v2).code == 0
    assert (root / "etc/passwd").read_bytes() == b"root:x:0:0:new\n"
    assert not (root / "etc/passwd").is_symlink()
    assert _untouched(sentinel, before)
    assert cli("--root", root, "system", "state", "rollback", "1").code == 0
    assert (root / "etc/passwd").is_symlink()
    assert _untouched(sentinel, before)


def test_rootfs_walk_stops_at_symlinks(tmp_path: Path, sentinel: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r/link").symlink_to(sentinel)
    with RootFS(tmp_path / "r") as fs, pytest.raises(UnsafePathError):
        fs.create("link/new")
    assert not (sentinel / "new").exists()
