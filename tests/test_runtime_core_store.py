"""The content store's packs: what a changeset writes, dedupe, gc repacking, leftovers, loose objects."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from pathlib import Path

import pytest
import zstandard

from conary.runtime import gc, install_packages, remove, restore, rollback, verify
from helpers_runtime import Keys, build, make_keys, new_root, snapshot_tree

# Enough files that staging uses both workers (and so possibly two packs).
MANY = {f"usr/share/many/f{i:03d}.txt": f"file {i}\n".encode() * (i + 1) for i in range(80)}
ONE = {"usr/bin/one": ("file", b"echo one\n", 0o755), "usr/share/one/big.dat": bytes(range(256)) * 300}
TWO = {"usr/bin/one": ("file", b"echo two\n", 0o755), "usr/share/one/big.dat": bytes(range(256)) * 300}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("pkgs")
    return {
        "many": build(work, keys, "many", "1", MANY),
        "one1": build(work, keys, "one", "1", ONE),
        "one2": build(work, keys, "one", "2", TWO),
    }


def _index(root: Path) -> dict[str, tuple[str, int, int]]:
    db = sqlite3.connect(root / "var/lib/conary/conary.db")
    try:
        rows = db.execute("SELECT sha256, pack, offset, length FROM objects")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}
    finally:
        db.close()


def _packs(root: Path) -> list[Path]:
    return sorted((root / "conary/objects/packs").glob("*"))


def test_a_changeset_writes_packs_not_one_file_per_object(tmp_path: Path, keys: Keys, pkgs) -> None:
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [pkgs["many"]], sandbox="never")
    index = _index(root)
    assert len(index) == len(set(MANY.values()))  # one object per distinct content
    assert 1 <= len(_packs(root)) <= 2  # one per staging worker
    assert {pack for pack, _, _ in index.values()} == {p.name for p in _packs(root)}
    assert not any(p.is_file() for p in (root / "conary/objects").glob("??/*"))  # no loose objects
    # Objects are distinct byte ranges of their pack.
    by_pack: dict[str, list[tuple[int, int]]] = {}
    for pack, offset, length in index.values():
        by_pack.setdefault(pack, []).append((offset, length))
    for pack, ranges in by_pack.items():
        ranges.sort()
        assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(ranges))
        assert ranges[-1][0] + ranges[-1][1] <= (root / "conary/objects/packs" / pack).stat().st_size
    assert verify(root) == []


def test_stored_content_is_not_written_again(tmp_path: Path, keys: Keys, pkgs) -> None:
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [pkgs["one1"]], sandbox="never")
    before = _index(root)
    install_packages(root, [pkgs["one2"]], sandbox="never")  # big.dat unchanged
    after = _index(root)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == len(before) + 1  # only the new usr/bin/one


def test_gc_repacks_a_partly_needed_pack(tmp_path: Path, keys: Keys, pkgs) -> None:
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [pkgs["one1"]], sandbox="never")
    first_pack = {pack for pack, _, _ in _index(root).values()}
    install_packages(root, [pkgs["one2"]], sandbox="never")
    tree = snapshot_tree(root)
    report = gc(root, keep_states=1)
    assert report.objects == 1 and report.bytes > 0  # the old usr/bin/one
    index = _index(root)
    assert len(index) == 2 and not first_pack & {pack for pack, _, _ in index.values()}
    assert {p.name for p in _packs(root)} == {pack for pack, _, _ in index.values()}
    assert verify(root) == []
    (root / "usr/share/one/big.dat").unlink()  # restore reads the repacked object
    restore(root)
    assert snapshot_tree(root) == tree
    assert gc(root).objects == 0


def test_unindexed_packs_are_leftovers(tmp_path: Path, keys: Keys, pkgs, cli) -> None:
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [pkgs["one1"]], sandbox="never")
    stray = root / "conary/objects/packs/0123456789ab-0.pack"  # as an interrupted changeset leaves it
    stray.write_bytes(b"partial")
    assert cli("--root", root, "system", "recover", "--dry-run").code == 0
    assert stray.exists()
    assert cli("--root", root, "system", "recover").code == 0
    assert not stray.exists()
    assert verify(root) == []


def test_a_corrupt_pack_is_refused_not_installed(tmp_path: Path, keys: Keys, pkgs) -> None:
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [pkgs["one1"]], sandbox="never")
    (first,) = {pack for pack, _, _ in _index(root).values()}
    install_packages(root, [pkgs["one2"]], sandbox="never")
    pack, offset, length = next(
        loc for loc in _index(root).values() if loc[2] < 100 and loc[0].startswith(first)
    )  # the small usr/bin/one of version 1
    path = root / "conary/objects/packs" / pack
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[offset + length - 1] ^= 0xFF  # damage the frame (its checksum or content)
    path.write_bytes(bytes(data))
    tree = snapshot_tree(root)
    with pytest.raises(Exception, match="corrupt"):
        rollback(root, 1, sandbox="never")
    assert snapshot_tree(root) == tree


def test_loose_objects_of_older_roots_are_still_read(tmp_path: Path, keys: Keys, pkgs) -> None:
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [pkgs["one1"]], sandbox="never")
    content = b"echo one\n"
    sha = hashlib.sha256(content).hexdigest()
    loose = root / "conary/objects" / sha[:2] / sha[2:]
    loose.parent.mkdir()
    loose.write_bytes(zstandard.ZstdCompressor(write_content_size=True).compress(content))
    db = sqlite3.connect(root / "var/lib/conary/conary.db")
    db.execute("DELETE FROM objects WHERE sha256 = ?", (sha,))
    db.commit()
    db.close()
    assert verify(root) == []
    remove(root, ["one"], sandbox="never")
    rollback(root, 1, sandbox="never")  # brings usr/bin/one back from the loose object
    assert (root / "usr/bin/one").read_bytes() == content
    remove(root, ["one"], sandbox="never")
    assert gc(root, keep_states=1).objects == 2 and not loose.exists()


def test_the_same_install_writes_the_same_packs_and_index(tmp_path: Path, keys: Keys) -> None:
    """Staging runs on two threads, but which pack holds an object, and where, is decided by the
    plan: installs of the same packages give byte-identical packs and index rows (a reproducible
    image holds the runtime's store)."""
    files = {f"usr/share/lanes/d{i % 7}/f{i:04d}": hashlib.sha256(b"%d" % i).digest() * (1 + i % 300)
             for i in range(600)}  # fmt: skip
    package = build(tmp_path / "pkg", keys, "lanes", "1", files)

    def store(n: int) -> tuple[list[bytes], list[tuple[str, str, int, int]]]:
        root = new_root(tmp_path / f"root{n}", keys)
        install_packages(root, [package])
        packs = _packs(root)
        lane = {p.name: p.name.rsplit("-", 1)[1] for p in packs}  # the txid differs, the lane not
        index = _index(root).items()
        rows = sorted((sha, lane[pack], offset, length) for sha, (pack, offset, length) in index)
        return [p.read_bytes() for p in packs], rows

    first = store(0)
    assert len(first[0]) == 2  # both lanes wrote
    for n in range(1, 4):
        assert store(n) == first
