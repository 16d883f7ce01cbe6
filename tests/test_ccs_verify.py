"""The reader verifies everything before writing: tampering and malicious packages are refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cbor2
import pytest

from conary.ccs import CcsVerifyError, PackageMeta, build_package, open_package
from conary.ccs.keys import new_signing_key
from conary.ccs.model import FileEntry
from conary.ccs.tarfmt import BLOCK, parse_members
from helpers_ccs import (
    compress,
    craft_package,
    dir_entry,
    file_entry,
    make_manifest,
    sha,
    symlink_entry,
)

KEY = new_signing_key()


@pytest.fixture(scope="module")
def good_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (tree / "usr/share").mkdir(parents=True)
    (tree / "usr/share/blob").write_bytes(os.urandom(200_000))  # several chunks
    (tree / "usr/share/small").write_bytes(b"small file\n" * 10)
    os.symlink("tool", tree / "usr/bin/alias")
    return build_package(
        tree,
        PackageMeta("good", "1"),
        output_dir=tmp_path_factory.mktemp("out"),
        signing_key=KEY,
        source_date_epoch=99,
    )


def _regions(path: Path) -> list[tuple[str, int, str]]:
    """(region label, byte offset, expected message fragment) for every region of the archive."""
    data = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        members = parse_members(fd, len(data), max_members=1000, budgets={"*": 1 << 30})
    finally:
        os.close(fd)
    out: list[tuple[str, int, str]] = []
    for index, m in enumerate(members):
        label = m.name if index < 2 else f"object#{index - 2}"
        for field, offset in (
            ("name", 5),
            ("mode", 101),
            ("size", 130),
            ("mtime", 140),
            ("chksum", 150),
            ("typeflag", 156),
            ("magic", 258),
            ("uname", 266),
            ("pad", 505),
        ):
            out.append((f"{label}:header:{field}", m.header_offset + offset, "tar header"))
        if m.name == "MANIFEST":
            for where in (0, m.size // 2, m.size - 1):
                out.append((f"MANIFEST:data@{where}", m.data_offset + where, "signature does not match"))
        elif m.name == "MANIFEST.sig":
            for where in (0, m.size // 2, m.size - 1):
                out.append((f"MANIFEST.sig:data@{where}", m.data_offset + where, "MANIFEST.sig"))
        else:
            for where in (0, m.size // 2, m.size - 1):
                out.append((f"{label}:data@{where}", m.data_offset + where, "object"))
        if m.size % BLOCK:
            out.append((f"{label}:padding", m.data_offset + m.size, "padding"))
    end = members[-1].data_offset + members[-1].size + (-members[-1].size % BLOCK)
    # A damaged first end block looks like a damaged header; the rest is the end-of-archive area.
    out.append(("end-of-archive:block1", end + 3, "tar header"))
    out.append(("end-of-archive:block2", end + BLOCK + 3, "end-of-archive"))
    out.append(("record-padding", len(data) - 1, "end-of-archive"))
    return out


def test_regions_cover_every_object(good_package: Path) -> None:
    with open_package(good_package) as pkg:
        n_objects = len(pkg.object_ids)
    labels = {label.split(":")[0] for label, _, _ in _regions(good_package)}
    assert {f"object#{i}" for i in range(n_objects)} <= labels
    assert n_objects >= 4


def test_flipping_any_byte_fails_verification(good_package: Path, tmp_path: Path, cli) -> None:
    original = good_package.read_bytes()
    failures = []
    for label, offset, fragment in _regions(good_package):
        data = bytearray(original)
        data[offset] ^= 0xFF
        bad = tmp_path / "bad.ccs"
        bad.write_bytes(bytes(data))
        r = cli("ccs", "verify", bad)
        if r.code != 1 or fragment not in r.err:
            failures.append((label, r.code, r.err.strip()))
    assert not failures, failures


def test_untampered_package_verifies(good_package: Path, cli) -> None:
    r = cli("ccs", "verify", good_package)
    assert r.code == 0 and r.out.startswith("OK good-1-1.")


# ------------------------------------------------------------------ malicious packages

DATA = b"payload\n"


def _one_file(entries: list[FileEntry], objects: dict[str, bytes] | None = None) -> tuple:
    return make_manifest(sorted(entries, key=lambda e: e.path.encode())), objects or {sha(DATA): DATA}


def _million_entries() -> bytes:
    head = b"\xae" + cbor2.dumps("arch") + cbor2.dumps("x86_64") + cbor2.dumps("name") + cbor2.dumps("evil")
    return head + cbor2.dumps("files") + b"\x9a" + (1_000_000).to_bytes(4, "big") + b"\xa0" * 64


def _case(name: str):
    if name == "dotdot":
        return _one_file([file_entry("usr/../etc/passwd", DATA)])
    if name == "absolute":
        return _one_file([file_entry("/etc/passwd", DATA)])
    if name == "symlink-out-of-root":
        return _one_file([dir_entry("usr"), symlink_entry("usr/evil", "../../../../etc")])
    if name == "through-symlink":
        return _one_file(
            [dir_entry("usr"), symlink_entry("usr/link", "/etc"), file_entry("usr/link/passwd", DATA)]
        )
    if name == "out-and-through":
        return _one_file([symlink_entry("evil", "../../etc"), file_entry("evil/passwd", DATA)])
    if name == "duplicate":
        return _one_file([file_entry("a", DATA), file_entry("a", DATA)])
    if name == "hash-mismatch":
        manifest, _ = _one_file([file_entry("a", DATA)])
        return manifest, {sha(DATA): b"something else\n"}
    if name == "size-lie":
        big = os.urandom(40_000)
        entry = FileEntry("a", "file", 0o644, 0, 0, 50_000, sha(big), (sha(big),), "", "runtime", False)
        return make_manifest([entry]), {sha(big): big}
    if name == "ten-gigabytes":
        chunk = bytes(256 * 1024)
        n = (10 * 10**9) // len(chunk) + 1
        entry = FileEntry(
            "huge", "file", 0o644, 0, 0, n * len(chunk), sha(b"x"), (sha(chunk),) * n, "", "runtime", False
        )
        return make_manifest([entry]), {sha(chunk): chunk}
    if name == "million-entries":
        return _million_entries(), {}
    if name == "missing-object":
        manifest, _ = _one_file([file_entry("a", DATA)])
        return manifest, {}
    if name == "extra-object":
        manifest, _ = _one_file([file_entry("a", DATA)])
        return manifest, {sha(DATA): DATA, sha(b"extra"): b"extra"}
    raise AssertionError(name)


MALICIOUS = {
    "dotdot": "'..' component",
    "absolute": "absolute path",
    "symlink-out-of-root": "symlink points out of the root",
    "through-symlink": "path goes through the symlink usr/link",
    "out-and-through": "symlink points out of the root",
    "duplicate": "duplicate path",
    "hash-mismatch": "sha256 mismatch",
    "size-lie": "size lie",
    "ten-gigabytes": "over the per-file budget",
    "million-entries": "lists 1000000 entries, over the budget",
    "missing-object": "missing from the archive",
    "extra-object": "no file uses",
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_package_is_refused_and_nothing_written(case: str, tmp_path: Path, cli) -> None:
    manifest, objects = _case(case)
    pkg = craft_package(tmp_path / f"{case}.ccs", manifest, objects, KEY)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("old")
    r = cli("ccs", "extract", pkg, dest)
    assert r.code == 1, r.err
    assert MALICIOUS[case] in r.err
    assert sorted(p.name for p in dest.iterdir()) == ["keep"]
    with pytest.raises(CcsVerifyError, match=MALICIOUS[case].replace("(", r"\(")):
        open_package(pkg)


def test_truncated_archive_is_refused(good_package: Path, tmp_path: Path, cli) -> None:
    data = good_package.read_bytes()
    for cut in (len(data) // 2, len(data) // 2 + 100, 600, len(data) - 10240):
        bad = tmp_path / "cut.ccs"
        bad.write_bytes(data[:cut])
        r = cli("ccs", "extract", bad, tmp_path / "dest")
        assert r.code == 1 and "truncated" in r.err, (cut, r.err)
        assert not (tmp_path / "dest").exists()


def test_manifest_over_byte_budget_is_refused_before_reading(tmp_path: Path) -> None:
    from conary.ccs.tarfmt import make_header

    bad = tmp_path / "huge-manifest.ccs"
    bad.write_bytes(make_header("MANIFEST", 100 * 2**20, 0) + b"\0" * 4096)
    with pytest.raises(CcsVerifyError, match="over the budget of 67108864"):
        open_package(bad)


def test_valid_crafted_package_passes(tmp_path: Path) -> None:
    manifest, objects = _one_file([dir_entry("usr"), file_entry("usr/a", DATA), symlink_entry("usr/b", "a")])
    with open_package(craft_package(tmp_path / "ok.ccs", manifest, objects, KEY), [KEY.public_key]) as pkg:
        pkg.extract(tmp_path / "x")
    assert (tmp_path / "x/usr/a").read_bytes() == DATA
    assert os.readlink(tmp_path / "x/usr/b") == "a"


def test_untrusted_signer_and_wrong_key(tmp_path: Path) -> None:
    manifest, objects = _one_file([file_entry("a", DATA)])
    pkg = craft_package(tmp_path / "p.ccs", manifest, objects, KEY)
    other = new_signing_key()
    with pytest.raises(CcsVerifyError, match=f"untrusted key {KEY.key_id}"):
        open_package(pkg, [other.public_key])
    with open_package(pkg) as opened:
        assert opened.signer_key_id == KEY.key_id


def test_object_not_a_single_frame(tmp_path: Path) -> None:
    manifest, _ = _one_file([file_entry("a", DATA)])
    blob = compress(DATA) + b"trailing"
    pkg = craft_package(tmp_path / "p.ccs", manifest, {sha(DATA): blob}, KEY, raw_objects=True)
    with pytest.raises(CcsVerifyError, match="exactly one complete zstd frame"):
        open_package(pkg)


def test_extract_never_follows_symlinks_in_dest(good_package: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.mkdir()
    dest.mkdir()
    os.symlink(outside, dest / "usr")
    with open_package(good_package) as pkg, pytest.raises(Exception, match="is a symlink in the destination"):
        pkg.extract(dest)
    assert list(outside.iterdir()) == []


def test_object_changed_after_open_is_caught(good_package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.ccs"
    copy.write_bytes(good_package.read_bytes())
    with open_package(copy) as pkg:
        entry = next(f for f in pkg.manifest.files if f.path == "usr/share/blob")
        ref = pkg._objects[entry.chunks[0]]
        with open(copy, "r+b") as handle:
            handle.seek(ref.offset + ref.length // 2)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(CcsVerifyError):
            b"".join(pkg.iter_file_data(entry))
    assert hashlib.sha256(b"").hexdigest()


def test_objects_out_of_first_use_order(tmp_path: Path) -> None:
    from conary.ccs.manifest import encode_manifest

    manifest, _ = _one_file([file_entry("a", b"first\n"), file_entry("b", b"second\n")])
    objects = {sha(b"second\n"): b"second\n", sha(b"first\n"): b"first\n"}  # b's object before a's
    pkg = craft_package(tmp_path / "p.ccs", encode_manifest(manifest), objects, KEY)
    with pytest.raises(CcsVerifyError, match="not in first-use order"):
        open_package(pkg)
