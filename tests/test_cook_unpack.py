"""Unpacking: every format by its magic bytes, stripping, and refusal of unsafe archives before writing."""

from __future__ import annotations

import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from conary.cook.unpack import UnpackError, _XzReader, copy_source, detect_format, unpack

MTIME = 1_600_000_000


def _add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x\n", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 1234
    info.uname = info.gname = "someone"
    tar.addfile(info, io.BytesIO(data))


def _add(tar: tarfile.TarFile, name: str, kind: bytes, link: str = "", mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    info.mtime = MTIME
    tar.addfile(info)


def _project_tar(path: Path, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        _add(tar, "proj-1.0", tarfile.DIRTYPE)
        _add(tar, "proj-1.0/src", tarfile.DIRTYPE, mode=0o555)
        _add_file(tar, "proj-1.0/src/main.c", b"int main(void) { return 0; }\n")
        _add_file(tar, "proj-1.0/configure", b"#!/bin/sh\n", mode=0o4777)
        _add(tar, "proj-1.0/link", tarfile.SYMTYPE, "src/main.c")
        _add(tar, "proj-1.0/hard", tarfile.LNKTYPE, "proj-1.0/src/main.c", mode=0o644)
    return path


@pytest.mark.parametrize(
    ("mode", "suffix", "fmt"),
    [
        ("w:gz", ".tar.gz", "tar.gz"),
        ("w:xz", ".tar.xz", "tar.xz"),
        ("w:bz2", ".tar.bz2", "tar.bz2"),
        ("w", ".tar", "tar"),
    ],
)
def test_tar_formats_unpack_and_strip_the_top_directory(
    tmp_path: Path, mode: str, suffix: str, fmt: str
) -> None:
    # The name lies on purpose: detection goes by content.
    archive = _project_tar(tmp_path / f"src{suffix}.bin", mode)
    assert detect_format(archive) == fmt
    result = unpack(archive, tmp_path / "out")
    out = tmp_path / "out"
    assert result.stripped == "proj-1.0"
    assert (out / "src" / "main.c").read_text() == "int main(void) { return 0; }\n"
    assert os.readlink(out / "link") == "src/main.c"
    assert os.stat(out / "hard").st_ino == os.stat(out / "src" / "main.c").st_ino
    # setuid and group/other write are masked; owner write is kept so the build can edit files.
    assert stat.S_IMODE(os.stat(out / "configure").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "src").st_mode) == 0o755
    assert int(os.stat(out / "src" / "main.c").st_mtime) == MTIME
    assert int(os.stat(out / "src").st_mtime) == MTIME
    assert result.newest_mtime == MTIME


def _raw_tar(tmp_path: Path) -> bytes:
    return _project_tar(tmp_path / "raw.tar").read_bytes()


def test_zstd_and_lzip_archives(tmp_path: Path) -> None:
    raw = _raw_tar(tmp_path)
    zst = tmp_path / "a.tar.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(raw))
    assert detect_format(zst) == "tar.zst"
    unpack(zst, tmp_path / "z")
    assert (tmp_path / "z" / "src" / "main.c").is_file()

    lz = tmp_path / "a.tar.lz"
    lz.write_bytes(subprocess.run(["lzip", "-c"], input=raw, capture_output=True, check=True).stdout)
    assert detect_format(lz) == "tar.lz"
    unpack(lz, tmp_path / "l")
    assert (tmp_path / "l" / "src" / "main.c").is_file()


def test_zip_archive_keeps_unix_modes_and_symlinks(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("proj/run.sh", date_time=(2020, 1, 2, 3, 4, 6))
        info.create_system = 3
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(info, "#!/bin/sh\n")
        link = zipfile.ZipInfo("proj/alias", date_time=(2020, 1, 2, 3, 4, 6))
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "run.sh")
    assert detect_format(archive) == "zip"
    unpack(archive, tmp_path / "out")
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "run.sh").st_mode) == 0o755
    assert os.readlink(tmp_path / "out" / "alias") == "run.sh"
    assert int(os.stat(tmp_path / "out" / "run.sh").st_mtime) == 1577934246  # read as UTC


def test_extract_dir_selects_the_source_root(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        _add_file(tar, "one/a.txt")
        _add_file(tar, "two/b.txt")
    unpack(archive, tmp_path / "out", extract_dir="two")
    assert sorted(os.listdir(tmp_path / "out")) == ["b.txt"]
    with pytest.raises(UnpackError, match="extract_dir 'three' is not in the archive"):
        unpack(archive, tmp_path / "other", extract_dir="three")


def test_several_top_entries_are_not_stripped(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        _add_file(tar, "one/a.txt")
        _add_file(tar, "README")
    result = unpack(archive, tmp_path / "out")
    assert result.stripped == ""
    assert sorted(os.listdir(tmp_path / "out")) == ["README", "one"]


def test_unpacking_twice_gives_identical_trees(tmp_path: Path) -> None:
    archive = _project_tar(tmp_path / "a.tar.gz", "w:gz")

    def listing(root: Path) -> list[tuple[str, int, int]]:
        rows = []
        for dirpath, dirs, files in os.walk(root):
            for name in sorted(dirs + files):
                st = os.lstat(os.path.join(dirpath, name))
                rows.append(
                    (os.path.relpath(os.path.join(dirpath, name), root), st.st_mode, int(st.st_mtime))
                )
        return sorted(rows)

    unpack(archive, tmp_path / "a")
    unpack(archive, tmp_path / "b")
    assert listing(tmp_path / "a") == listing(tmp_path / "b")


BAD = [
    ("dotdot", lambda t: _add_file(t, "p/../../evil"), "member 'p/../../evil' has a '..' component"),
    ("absolute", lambda t: _add_file(t, "/etc/evil"), "member '/etc/evil' has an absolute path"),
    ("chardev", lambda t: _add(t, "p/null", tarfile.CHRTYPE), "member 'p/null' is a device file"),
    ("blockdev", lambda t: _add(t, "p/sda", tarfile.BLKTYPE), "member 'p/sda' is a device file"),
    ("fifo", lambda t: _add(t, "p/pipe", tarfile.FIFOTYPE), "member 'p/pipe' is a fifo"),
    (
        "abs-symlink",
        lambda t: _add(t, "p/l", tarfile.SYMTYPE, "/etc/passwd"),
        "symlink 'p/l' points outside the tree (absolute target '/etc/passwd')",
    ),
    (
        "rel-symlink",
        lambda t: _add(t, "p/l", tarfile.SYMTYPE, "../../x"),
        "symlink 'p/l' points outside the tree (target '../../x')",
    ),
    (
        "hardlink-out",
        lambda t: _add(t, "p/h", tarfile.LNKTYPE, "etc/passwd"),
        "hardlink 'p/h' points to 'etc/passwd', which is not an earlier file of the archive",
    ),
]


@pytest.mark.parametrize(("label", "adder", "message"), BAD, ids=[b[0] for b in BAD])
def test_unsafe_archives_are_refused_before_anything_is_written(
    tmp_path: Path, label, adder, message
) -> None:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add_file(tar, "p/first.txt")  # would be written first by a naive extractor
        adder(tar)
    out = tmp_path / "out"
    with pytest.raises(UnpackError) as caught:
        unpack(archive, out, label="https://example.org/bad.tar.gz")
    assert caught.value.what == message
    assert caught.value.where == "https://example.org/bad.tar.gz"
    assert not out.exists()


def test_symlink_chains_that_escape_are_refused(tmp_path: Path) -> None:
    # d/a -> .. stays inside, but d/b -> a/.. resolves through it to the parent of the tree.
    archive = tmp_path / "chain.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "p/d", tarfile.DIRTYPE)
        _add(tar, "p/d/a", tarfile.SYMTYPE, "..")
        _add(tar, "p/d/b", tarfile.SYMTYPE, "a/../..")
    with pytest.raises(UnpackError, match="symlink 'p/d/b' points outside the tree"):
        unpack(archive, tmp_path / "out")


def test_members_through_symlinks_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "through.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, "p/dir", tarfile.SYMTYPE, ".")
        _add_file(tar, "p/dir/x")
    with pytest.raises(UnpackError, match="member 'p/dir/x' passes through the symlink 'p/dir'"):
        unpack(archive, tmp_path / "out")


def test_unknown_archive_type_is_a_precise_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(b"just some text, not an archive\n" * 20)
    with pytest.raises(UnpackError) as caught:
        detect_format(path)
    assert caught.value.what == "unknown archive type (first bytes: 6a 75 73 74 20 73 6f 6d)"


def test_corrupt_archive_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    good = _project_tar(tmp_path / "a.tar.xz", "w:xz").read_bytes()
    bad = tmp_path / "b.tar.xz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(UnpackError, match=r"corrupt tar\.xz archive"):
        unpack(bad, tmp_path / "out")


def test_copy_source_keeps_name_and_mtime(tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(b"payload")
    os.utime(src, (MTIME, MTIME))
    dest = copy_source(src, tmp_path / "tree" / "extra", "data.bin")
    assert dest.read_bytes() == b"payload"
    assert int(dest.stat().st_mtime) == MTIME
    shutil.rmtree(tmp_path / "tree")


@settings(max_examples=40, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=3 * 1024 * 1024 // 64), min_size=1, max_size=4),
    padding=st.sampled_from([b"", b"\0" * 4, b"\0" * 12]),
    read_size=st.sampled_from([1, 511, 4096, 1 << 20, -1]),
)
def test_xz_reader_gives_the_bytes_of_every_concatenated_stream(
    parts: list[bytes], padding: bytes, read_size: int
) -> None:
    """Unpacking a .tar.xz decompresses on a thread: its reader yields exactly what xz would, for
    several streams with padding between them and any read size."""
    data = padding.join(lzma.compress(part, format=lzma.FORMAT_XZ) for part in parts)
    with _XzReader(io.BytesIO(data)) as reader:
        out = b"".join(iter(lambda: reader.read(read_size), b""))
    assert out == b"".join(parts)


def test_xz_reader_raises_for_truncated_and_corrupt_data() -> None:
    data = lzma.compress(os.urandom(300_000), format=lzma.FORMAT_XZ)
    with _XzReader(io.BytesIO(data[:-10])) as reader, pytest.raises(EOFError):
        while reader.read(4096):
            pass
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with _XzReader(io.BytesIO(bytes(flipped))) as reader, pytest.raises(lzma.LZMAError):
        while reader.read(4096):
            pass


def test_an_unread_xz_reader_closes_without_waiting_for_the_rest(tmp_path: Path) -> None:
    """tarfile stops at the archive's end marker: the thread must not block on a full queue. (32 MiB
    of zeros are a few KiB of xz: the output of each call is bounded, not the input's.)"""
    data = lzma.compress(bytes(32 * 1024 * 1024), format=lzma.FORMAT_XZ)
    with _XzReader(io.BytesIO(data)) as reader:
        assert len(reader.read(10)) == 10
    assert not reader._thread.is_alive()
