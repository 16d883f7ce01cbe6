"""The runtime reads manifests from its database with a fast decoder; verify still checks them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conary.ccs import decode_manifest, open_package
from conary.ccs.manifest import decode_stored_manifest
from conary.runtime import install_packages, verify
from helpers_runtime import Keys, build, make_keys, new_root

TREE = {
    "usr/bin/tool": ("file", b"tool binary\n", 0o755),
    "usr/lib/libx.so.1": ("symlink", "libx.so.1.0"),
    "usr/lib/libx.so.1.0": ("file", bytes(range(256)) * 400, 0o644),
    "etc/tool.conf": ("file", b"x = 1\n", 0o644),
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


def _manifest_bytes(package: Path) -> bytes:
    with open_package(package) as pkg:
        return pkg.manifest_bytes


def test_stored_decoder_gives_the_checked_decoders_manifest(tmp_path: Path, keys: Keys) -> None:
    package = build(tmp_path, keys, "tool", "1.0", TREE)
    data = _manifest_bytes(package)
    assert decode_stored_manifest(data) == decode_manifest(data)


def test_verify_reports_a_tampered_stored_manifest(tmp_path: Path, keys: Keys) -> None:
    package = build(tmp_path, keys, "tool", "1.0", TREE)
    root = new_root(tmp_path / "root", keys)
    install_packages(root, [package])
    assert verify(root) == []
    db = sqlite3.connect(root / "var/lib/conary/conary.db")
    with db:
        (data,) = db.execute("SELECT data FROM manifests WHERE name = 'tool'").fetchone()
        tampered = bytes(data).replace(b"usr/bin/tool", b"usr/bin/toox")
        db.execute("UPDATE manifests SET data = ? WHERE name = 'tool'", (tampered,))
    db.close()
    problems = verify(root)
    assert [(p.path, p.what) for p in problems if p.path.startswith("(database")] == [
        ("(database: tool)", "stored manifest does not match its digest")
    ]
