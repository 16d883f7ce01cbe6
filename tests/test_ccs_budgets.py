"""Budgets at write time: a package that declares more than the destination holds is refused before
the first write (`ccs extract` and `install`), and `ccs extract` of an untrusted package never
creates setuid or setgid files."""

from __future__ import annotations

import os
import random
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conary.ccs import FileEntry, PackageMeta, build_package, generate_keypair, open_package
from conary.ccs.keys import load_signing_key
from helpers_ccs import craft_package, dir_entry, make_manifest, sha
from helpers_runtime import make_keys, new_root, snapshot_tree, trust

CHUNK = random.Random(11).randbytes(256 * 1024)
REPEATS = 128  # one 256 KiB object listed 128 times: a 32 MiB file from a package of about 300 KiB


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs."""
    mountpoint = tmp_path / "small-fs"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def _amplifying_package(path: Path, key_path: Path) -> Path:
    """A validly signed package whose one file repeats a single chunk: small on disk, big declared."""
    data_sha = sha(CHUNK * REPEATS)
    entry = FileEntry(
        "usr/share/big/blob", "file", 0o644, 0, 0, len(CHUNK) * REPEATS, data_sha,
        (sha(CHUNK),) * REPEATS, "", "runtime", False,
    )  # fmt: skip
    files = [dir_entry("usr"), dir_entry("usr/share"), dir_entry("usr/share/big"), entry]
    return craft_package(
        path, make_manifest(files, name="amplify"), {sha(CHUNK): CHUNK}, load_signing_key(key_path)
    )


def test_extract_refuses_a_declared_size_over_the_free_space_before_writing(
    tmp_path: Path, small_fs: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    secret, _ = generate_keypair(tmp_path / "k")
    pkg = _amplifying_package(tmp_path / "amplify.ccs", secret)
    assert pkg.stat().st_size < 400 * 1024
    with open_package(pkg) as opened:  # valid: the reader checked every declared byte
        assert opened.manifest.files[-1].size == 32 * 1024 * 1024
    dest = small_fs / "out"

    r = cli("ccs", "extract", pkg, dest)

    assert r.code == 1
    line = r.err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "needs 32.0 MiB" in line and "free" in line and str(dest) in line, line
    assert not dest.exists()  # not even the destination directory was made
    assert os.listdir(small_fs) == []


def test_install_refuses_a_declared_size_over_the_free_space_before_writing(
    tmp_path: Path, small_fs: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    keys = make_keys(tmp_path / "keys")
    pkg = _amplifying_package(tmp_path / "amplify.ccs", keys.secret)
    root = new_root(small_fs / "root", keys)
    # The database records the verified manifest when the package is loaded; everything else,
    # the content store and the journal directory included, must stay exactly as it was.
    database = tuple(f"var/lib/conary/conary.db{s}" for s in ("", "-wal", "-shm"))
    before = snapshot_tree(root, exclude=database)

    r = cli("--root", root, "install", pkg)

    assert r.code == 1, r.err
    line = r.err.strip()
    # 32 MiB for the file, and as much again for its compressed chunks in the content store
    assert "\n" not in line and "needs 64.0 MiB" in line and "nothing was written" in line, line
    assert line.startswith(f"conary: error: {root}: install (install amplify) needs")
    assert snapshot_tree(root, exclude=database) == before  # no file, no pack, no journal
    assert cli("--root", root, "system", "state", "list", "--json").out.count('"number"') == 1


def test_install_that_fits_is_not_refused(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    keys = make_keys(tmp_path / "keys")
    pkg = _amplifying_package(tmp_path / "amplify.ccs", keys.secret)
    root = new_root(tmp_path / "root", keys)
    assert cli("--root", root, "install", pkg).code == 0
    assert (root / "usr/share/big/blob").read_bytes() == CHUNK * REPEATS


# --- setuid and setgid bits ---------------------------------------------------------------------


@pytest.fixture
def setid_package(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(package, its signer's public key, another public key); it holds a setuid and a setgid file."""
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    for name, mode in (("su-like", 0o4755), ("wall-like", 0o2755), ("plain", 0o755)):
        path = tree / "usr/bin" / name
        path.write_bytes(f"payload of {name}\n".encode())
        path.chmod(mode)
    secret, public = generate_keypair(tmp_path / "signer")
    _, other = generate_keypair(tmp_path / "other")
    pkg = build_package(
        tree, PackageMeta("setid", "1.0"), output_dir=tmp_path, signing_key=secret, split_debug=False
    )
    return pkg, public, other


def _modes(dest: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in (dest / "usr/bin").iterdir()}


def test_extract_without_a_trusted_signer_clears_setuid_and_setgid(
    tmp_path: Path, setid_package: tuple[Path, Path, Path], cli
) -> None:  # type: ignore[no-untyped-def]
    pkg, _, _ = setid_package
    r = cli("ccs", "extract", pkg, tmp_path / "dest")
    assert r.code == 0, r.err
    assert _modes(tmp_path / "dest") == {"su-like": 0o755, "wall-like": 0o755, "plain": 0o755}
    assert "cleared the setuid/setgid bits of 2 file(s)" in r.err
    assert "not trusted" in r.err


def test_preserve_setuid_keeps_the_bits_only_with_a_trusted_signer(
    tmp_path: Path, setid_package: tuple[Path, Path, Path], cli
) -> None:  # type: ignore[no-untyped-def]
    pkg, signer, other = setid_package

    r = cli("ccs", "extract", pkg, tmp_path / "untrusted", "--preserve-setuid")
    assert r.code == 2 and "--preserve-setuid needs a trusted signer" in r.err
    assert not (tmp_path / "untrusted").exists()

    r = cli("ccs", "extract", pkg, tmp_path / "wrong", "--trust", other, "--preserve-setuid")
    assert r.code == 1 and "Traceback" not in r.err
    assert not (tmp_path / "wrong").exists()

    r = cli("ccs", "extract", pkg, tmp_path / "trusted", "--trust", signer)
    assert r.code == 0, r.err
    assert _modes(tmp_path / "trusted")["su-like"] == 0o755  # trusted, but not asked to keep them

    r = cli("ccs", "extract", pkg, tmp_path / "kept", "--trust", signer, "--preserve-setuid")
    assert r.code == 0, r.err
    assert _modes(tmp_path / "kept") == {"su-like": 0o4755, "wall-like": 0o2755, "plain": 0o755}
    assert "cleared" not in r.err


def test_install_keeps_setuid_bits_of_a_package_the_root_trusts(
    tmp_path: Path, setid_package: tuple[Path, Path, Path], cli
) -> None:  # type: ignore[no-untyped-def]
    """The runtime installs only packages the root trusts (or --allow-untrusted): bits stay."""
    pkg, signer, _ = setid_package
    keys = make_keys(tmp_path / "keys")
    root = new_root(tmp_path / "root", keys)
    trust(root, type(keys)(tmp_path / "signer", signer))
    assert cli("--root", root, "install", pkg).code == 0
    assert _modes(root)["su-like"] == 0o4755
