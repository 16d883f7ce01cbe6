"""Format details: canonical CBOR, Merkle roots, tar headers, globs, dependency scanning."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from conary.ccs.components import glob_matches
from conary.ccs.deps import parse_pkgconfig
from conary.ccs.manifest import decode_manifest, encode_file, encode_manifest, encode_regular_file
from conary.ccs.merkle import _tree, leaf_hash, merkle_root, root_of_leaves
from conary.ccs.model import Dependency, FileEntry
from conary.ccs.tarfmt import make_header
from helpers_ccs import make_manifest_for

_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+é", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)


@st.composite
def file_entries(draw: st.DrawFn) -> list[FileEntry]:
    paths = draw(st.sets(st.lists(_segment, min_size=1, max_size=1).map(lambda p: "/".join(p)), max_size=12))
    out = []
    for path in sorted(paths, key=lambda p: p.encode()):
        kind = draw(st.sampled_from(["file", "dir", "symlink"]))
        comp = draw(st.sampled_from(["runtime", "lib", "devel", "x-tra"]))
        if kind == "file":
            data = draw(st.binary(max_size=64))
            digest = hashlib.sha256(data).hexdigest()
            chunks = (digest,) if data else ()
            mode = draw(st.integers(0, 0o7777))
            out.append(
                FileEntry(
                    path,
                    "file",
                    mode,
                    draw(st.integers(0, 2**32 - 1)),
                    0,
                    len(data),
                    digest,
                    chunks,
                    "",
                    comp,
                    False,
                )
            )
        elif kind == "dir":
            out.append(FileEntry(path, "dir", 0o755, 0, 0, 0, "", (), "", comp, False))
        else:
            out.append(
                FileEntry(path, "symlink", 0o777, 0, 0, 0, "", (), "/" + path + "-target", comp, False)
            )
    return out


@settings(max_examples=60, deadline=None)
@given(file_entries(), st.dictionaries(st.sampled_from(["recipe_hash", "builder", "x"]), st.text(max_size=8)))
def test_manifest_encoding_is_cbor2_canonical_and_round_trips(
    files: list[FileEntry], provenance: dict
) -> None:
    manifest = make_manifest_for(files, provenance)
    data = encode_manifest(manifest)
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
    assert decode_manifest(data) == manifest
    for entry in files:
        assert encode_file(entry) == cbor2.dumps(cbor2.loads(encode_file(entry)), canonical=True)


def test_merkle_root_shape() -> None:
    def leaf(x: bytes) -> bytes:
        return hashlib.sha256(b"\0" + x).digest()

    def node(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\1" + a + b).digest()

    a, b, c = b"a", b"b", b"c"
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    assert merkle_root([a]) == leaf(a).hex()
    assert merkle_root([a, b]) == node(leaf(a), leaf(b)).hex()
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c)).hex()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=300))
def test_merkle_root_by_levels_is_the_recursive_tree(items: list[bytes]) -> None:
    """The root is built level by level; the RFC 6962 recursion defines it."""
    leaves = [leaf_hash(item) for item in items]
    expected = _tree(leaves).hex() if leaves else hashlib.sha256(b"").hexdigest()
    assert root_of_leaves(leaves) == merkle_root(items) == expected


@settings(max_examples=100, deadline=None)
@given(file_entries())
def test_regular_file_records_encode_as_file_entries_do(files: list[FileEntry]) -> None:
    for f in files:
        if f.type == "file":
            fields = (f.path, f.mode, f.uid, f.gid, f.size, f.sha256, f.chunks, f.component, f.config)
            assert encode_regular_file(*fields) == encode_file(f)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-", min_size=1, max_size=100),
    st.integers(0, 8**11 - 1),
    st.integers(0, 8**11 - 1),
)
def test_tar_headers_carry_the_checksum_tar_computes(name: str, size: int, mtime: int) -> None:
    header = make_header(name, size, mtime)
    info = tarfile.TarInfo.frombuf(header, "ascii", "strict")  # checks the header checksum
    assert (info.name, info.size, info.mtime) == (name, size, mtime)


def test_tar_header_matches_python_tarfile_reading(tmp_path: Path) -> None:
    header = make_header("objects/ab/" + "c" * 62, 1234, 1700000000)
    blob = header + b"x" * 1234 + b"\0" * (-1234 % 512) + b"\0" * 1024
    (tmp_path / "t.tar").write_bytes(blob)
    with tarfile.open(tmp_path / "t.tar") as tar:
        (info,) = tar.getmembers()
    assert (info.name, info.size, info.mtime, info.mode, info.uid, info.uname) == (
        "objects/ab/" + "c" * 62,
        1234,
        1700000000,
        0o644,
        0,
        "root",
    )


def test_globs() -> None:
    assert glob_matches("/usr/share/doc/**", "usr/share/doc")
    assert glob_matches("usr/share/doc/**", "usr/share/doc/a/b")
    assert glob_matches("**/*.la", "usr/lib/libz.la") and glob_matches("**/*.la", "libz.la")
    assert not glob_matches("usr/lib/*.a", "usr/lib/sub/libz.a")
    assert glob_matches("usr/lib/lib?.so.[0-9]", "usr/lib/libz.so.1")


def test_pkgconfig_parsing() -> None:
    text = (
        "prefix=/usr\nv=1.2\nName: foo\nVersion: ${v}.3\n"
        "Requires: glib-2.0 >= 2.50, gobject-2.0\nRequires.private: zlib\n"
    )
    name, version, requires = parse_pkgconfig(text, "foo")
    assert (name, version) == ("foo", "1.2.3")
    assert requires == (
        Dependency("pkgconfig", "glib-2.0", ">= 2.50"),
        Dependency("pkgconfig", "gobject-2.0"),
        Dependency("pkgconfig", "zlib"),
    )
