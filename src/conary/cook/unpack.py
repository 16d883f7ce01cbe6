"""Unpack source archives safely and deterministically.

The archive type comes from its magic bytes, not its name. Every archive is scanned completely before
the first byte is written: absolute paths, ``..`` components, device files, fifos, paths that pass
through an archived symlink and links whose target leaves the tree refuse the whole archive with one
error that names the member. Extraction then keeps modes (setuid/setgid/sticky and group/other write
masked off) and mtimes, and ignores ownership, so two unpacks of the same bytes give the same tree.
"""

from __future__ import annotations

import calendar
import contextlib
import io
import lzma
import os
import posixpath
import queue
import shutil
import stat
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from conary.errors import ConaryError, InputError
from conary.fsutil import require_tool

# Formats we detect, by magic bytes. "tar" is an uncompressed ustar/gnu/pax archive.
FORMATS = ("tar.gz", "tar.xz", "tar.bz2", "tar.zst", "tar.lz", "tar", "zip")

_MAGIC = (
    (b"\x1f\x8b", "tar.gz"),
    (b"\xfd7zXZ\x00", "tar.xz"),
    (b"BZh", "tar.bz2"),
    (b"\x28\xb5\x2f\xfd", "tar.zst"),
    (b"LZIP", "tar.lz"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
)
_SYMLINK_DEPTH = 40
_FILE_MASK = 0o755
_READ_BLOCK = 1 << 20


class UnpackError(InputError):
    """An archive is unsafe, malformed or of an unknown type."""


@dataclass(frozen=True)
class Member:
    """One archive entry after the scan: a normalised relative path and what it is."""

    path: str  # normalised, relative, no trailing slash
    kind: str  # "file", "dir", "symlink", "hardlink"
    mode: int
    mtime: int
    link: str = ""  # symlink target as stored, or hardlink target (normalised archive path)


@dataclass(frozen=True)
class UnpackResult:
    root: Path  # the source root (the destination, after stripping)
    format: str
    stripped: str  # the top directory that was stripped, or ""
    newest_mtime: int  # the newest member mtime (a deterministic SOURCE_DATE_EPOCH candidate)
    files: int


def detect_format(path: str | os.PathLike[str], *, label: str | None = None) -> str:
    """The archive type of *path* from its first bytes; raise UnpackError for anything else.

    *label* names the archive in the error (its URL) instead of *path*."""
    with open(path, "rb") as stream:
        head = stream.read(512)
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    # A v7 tar has no ustar magic; accept it only when the header checksum is right.
    if len(head) == 512 and _is_v7_tar_header(head):
        return "tar"
    shown = head[:8].hex(" ") if head else "empty file"
    raise UnpackError(
        f"unknown archive type (first bytes: {shown})",
        where=label or str(path),
        hint="supported: " + ", ".join(FORMATS) + "; set extract = false to copy the file as is",
    )


def _is_v7_tar_header(head: bytes) -> bool:
    try:
        stored = int(head[148:156].split(b"\x00")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(head[:148]) + 8 * 32 + sum(head[156:512])
    return stored == computed and head[0] != 0


def unpack(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    extract_dir: str | None = None,
    strip_single_top: bool = True,
    label: str | None = None,
) -> UnpackResult:
    """Unpack *archive* into *dest* (created if needed; existing content is kept and may be merged).

    The members are scanned first and the whole archive is refused if any is unsafe. With
    *extract_dir*, that directory of the archive becomes *dest*'s content; otherwise a single top
    directory is stripped (when *strip_single_top*). *label* names the archive in errors (a URL or
    recipe key) instead of its cache path.
    """
    archive = Path(archive)
    dest = Path(dest)
    where = label or str(archive)
    fmt = detect_format(archive, label=where)
    members = _scan(archive, fmt, where)
    prefix = _choose_prefix(members, extract_dir, strip_single_top, where)
    dest.mkdir(parents=True, exist_ok=True)
    writer = _TreeWriter(dest, where)
    if fmt == "zip":
        _extract_zip(archive, members, prefix, writer)
    else:
        _extract_tar(archive, fmt, members, prefix, writer, where)
    writer.finish()
    kept = [m for m in members if _under(m.path, prefix)]
    return UnpackResult(
        root=dest,
        format=fmt,
        stripped=prefix,
        newest_mtime=max((m.mtime for m in kept), default=0),
        files=sum(1 for m in kept if m.kind in ("file", "hardlink")),
    )


# --------------------------------------------------------------------------- scanning


def _normalise(name: str, where: str) -> str:
    if name.startswith("/"):
        raise UnpackError(f"member '{name}' has an absolute path", where=where)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnpackError(f"member '{name}' has a '..' component", where=where)
    return "/".join(parts)


@contextlib.contextmanager
def _open_tar(archive: Path, fmt: str, where: str = "") -> Iterator[tarfile.TarFile]:
    """A streaming TarFile over the decompressed bytes (one forward pass, no seeking)."""
    if fmt == "tar.xz":
        with (
            open(archive, "rb") as raw,
            _XzReader(raw) as reader,
            tarfile.open(fileobj=reader, mode="r|") as tar,  # type: ignore[call-overload]
        ):
            yield tar
    elif fmt in ("tar.gz", "tar.bz2", "tar"):
        mode = {"tar.gz": "r|gz", "tar.bz2": "r|bz2", "tar": "r|"}[fmt]
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode=mode) as tar:
            yield tar
    elif fmt == "tar.zst":
        with open(archive, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            with reader, tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[arg-type]
                yield tar
    elif fmt == "tar.lz":
        lzip = require_tool("lzip", "lzip", "unpack .tar.lz sources")
        with open(archive, "rb") as raw:
            proc = subprocess.Popen([lzip, "-dc"], stdin=raw, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert proc.stdout is not None
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    yield tar
                # Drain so lzip reports errors in the trailing data, too.
                while proc.stdout.read(_READ_BLOCK):
                    pass
            finally:
                proc.stdout.close()
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                code = proc.wait()
            if code != 0:
                raise UnpackError(
                    f"lzip failed to decompress: {err or f'exit code {code}'}", where=where or str(archive)
                )
    else:  # pragma: no cover - detect_format returns only known formats
        raise UnpackError(f"not a tar format: {fmt}", where=str(archive))


class _XzReader:
    """The decompressed bytes of an xz file, decompressed by a thread of their own.

    xz is the slow part of unpacking a big tarball (a kernel's 150 MB is 25 s of it, and an unpack
    reads it twice: scan, then extract). liblzma releases the GIL, so a producer thread keeps the
    second core decompressing while tarfile parses and writes on the first. Concatenated streams
    and stream padding are read as xz does; corrupt or truncated data raises at the read that
    reaches it."""

    _AHEAD = 16  # blocks of at most 1 MiB decompressed ahead of the reader

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._blocks: queue.Queue[bytes | BaseException | None] = queue.Queue(self._AHEAD)
        self._stop = threading.Event()
        self._pending = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._produce, name="xz-unpack", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
            while not self._stop.is_set():
                if decompressor.eof:  # stream padding (zero bytes), then maybe another stream
                    rest = decompressor.unused_data.lstrip(b"\x00")
                    while not rest:
                        block = self._raw.read(_READ_BLOCK)
                        if not block:
                            self._put(None)
                            return
                        rest = block.lstrip(b"\x00")
                    decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
                    out = decompressor.decompress(rest, max_length=_READ_BLOCK)
                elif decompressor.needs_input:
                    block = self._raw.read(_READ_BLOCK)
                    if not block:
                        raise EOFError("compressed file ended before the end-of-stream marker")
                    out = decompressor.decompress(block, max_length=_READ_BLOCK)
                else:  # output is bounded per call, so a small input cannot fill the memory
                    out = decompressor.decompress(b"", max_length=_READ_BLOCK)
                if out:
                    self._put(out)
        except BaseException as err:  # handed to the reader, which raises it in its own thread
            self._put(err)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        chunks: list[bytes] = []
        wanted = size if size >= 0 else 1 << 62
        while wanted > 0:
            if not self._pending:
                if self._done:
                    break
                item = self._blocks.get()
                if item is None:
                    self._done = True
                    break
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                self._pending = memoryview(item)
            piece = self._pending[:wanted]
            self._pending = self._pending[len(piece) :]
            chunks.append(bytes(piece))
            wanted -= len(piece)
        return b"".join(chunks)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> _XzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scan(archive: Path, fmt: str, where: str) -> list[Member]:
    try:
        if fmt == "zip":
            members = _scan_zip(archive, where)
        else:
            with _open_tar(archive, fmt, where) as tar:
                members = [m for info in tar if (m := _tar_member(info, where)) is not None]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        if isinstance(err, OSError) and err.filename:
            raise
        raise UnpackError(f"corrupt {fmt} archive: {err}", where=where) from err
    except Exception as err:  # zstandard/lzma raise their own error types on corrupt data
        if isinstance(err, ConaryError):
            raise
        raise UnpackError(f"corrupt {fmt} archive: {err}", where=where) from err
    _check_links(members, where)
    return members


def _tar_member(info: tarfile.TarInfo, where: str) -> Member | None:
    path = _normalise(info.name, where)
    mtime = max(0, int(info.mtime))
    if info.ischr() or info.isblk():
        raise UnpackError(f"member '{info.name}' is a device file", where=where)
    if info.isfifo():
        raise UnpackError(f"member '{info.name}' is a fifo", where=where)
    if not path:
        if info.isdir():
            return None
        raise UnpackError(f"member '{info.name}' has an empty path", where=where)
    if info.isdir():
        return Member(path, "dir", info.mode, mtime)
    if info.issym():
        return Member(path, "symlink", info.mode, mtime, info.linkname)
    if info.islnk():
        return Member(path, "hardlink", info.mode, mtime, _normalise(info.linkname, where))
    if info.isreg():
        return Member(path, "file", info.mode, mtime)
    raise UnpackError(f"member '{info.name}' has unsupported tar type {info.type!r}", where=where)


def _scan_zip(archive: Path, where: str) -> list[Member]:
    members: list[Member] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = _normalise(info.filename, where)
            unix_mode = info.external_attr >> 16 if info.create_system == 3 else 0
            mtime = _zip_mtime(info)
            if unix_mode and (stat.S_ISCHR(unix_mode) or stat.S_ISBLK(unix_mode)):
                raise UnpackError(f"member '{info.filename}' is a device file", where=where)
            if unix_mode and stat.S_ISFIFO(unix_mode):
                raise UnpackError(f"member '{info.filename}' is a fifo", where=where)
            if not path:
                continue
            if info.is_dir():
                members.append(Member(path, "dir", stat.S_IMODE(unix_mode) or 0o755, mtime))
            elif unix_mode and stat.S_ISLNK(unix_mode):
                target = zf.read(info).decode("utf-8", errors="surrogateescape")
                members.append(Member(path, "symlink", 0o777, mtime, target))
            else:
                members.append(Member(path, "file", stat.S_IMODE(unix_mode) or 0o644, mtime))
    return members


def _zip_mtime(info: zipfile.ZipInfo) -> int:
    # DOS times carry no zone; reading them as UTC keeps the result independent of the host's TZ.
    try:
        return calendar.timegm((*info.date_time, 0, 0, 0))
    except (OverflowError, ValueError):
        return 0


def _check_links(members: list[Member], where: str) -> None:
    """Refuse paths through archived symlinks and links that resolve outside the tree."""
    symlinks = {m.path: m.link for m in members if m.kind == "symlink"}
    seen_files: set[str] = set()
    for member in members:
        parents = member.path.split("/")[:-1]
        for i in range(1, len(parents) + 1):
            prefix = "/".join(parents[:i])
            if prefix in symlinks:
                raise UnpackError(
                    f"member '{member.path}' passes through the symlink '{prefix}'", where=where
                )
        if member.kind == "symlink":
            if member.link.startswith("/"):
                raise UnpackError(
                    f"symlink '{member.path}' points outside the tree (absolute target '{member.link}')",
                    where=where,
                )
            parent = posixpath.dirname(member.path)
            if _resolve(parent, member.link, symlinks, 0) is None:
                raise UnpackError(
                    f"symlink '{member.path}' points outside the tree (target '{member.link}')", where=where
                )
        elif member.kind == "hardlink":
            if member.link not in seen_files:
                raise UnpackError(
                    f"hardlink '{member.path}' points to '{member.link}', which is not an earlier file "
                    "of the archive",
                    where=where,
                )
            seen_files.add(member.path)
        elif member.kind == "file":
            seen_files.add(member.path)


def _resolve(base: str, target: str, symlinks: dict[str, str], depth: int) -> list[str] | None:
    """Resolve *target* relative to directory *base* the way the kernel would in the unpacked tree.

    Returns the resolved components, or None if any step leaves the tree (or loops).
    """
    if depth > _SYMLINK_DEPTH or target.startswith("/"):
        return None
    stack = [p for p in base.split("/") if p]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(part)
        joined = "/".join(stack)
        if joined in symlinks:
            resolved = _resolve("/".join(stack[:-1]), symlinks[joined], symlinks, depth + 1)
            if resolved is None:
                return None
            stack = resolved
    return stack


def _under(path: str, prefix: str) -> bool:
    return not prefix or path.startswith(prefix + "/")


def _choose_prefix(members: list[Member], extract_dir: str | None, strip: bool, where: str) -> str:
    if extract_dir is not None:
        wanted = _normalise(extract_dir, where)
        if wanted and not any(_under(m.path, wanted) or m.path == wanted for m in members):
            tops = sorted({m.path.split("/")[0] for m in members})
            raise UnpackError(
                f"extract_dir '{extract_dir}' is not in the archive",
                where=where,
                hint="the archive's top entries are: " + ", ".join(tops[:10]),
            )
        return wanted
    if not strip or not members:
        return ""
    tops = {m.path.split("/")[0] for m in members}
    if len(tops) != 1:
        return ""
    (top,) = tops
    is_dir = any(m.path != top for m in members) or any(m.kind == "dir" for m in members if m.path == top)
    files_named_top = any(m.path == top and m.kind != "dir" for m in members)
    return top if is_dir and not files_named_top else ""


# --------------------------------------------------------------------------- writing


class _TreeWriter:
    """Writes members below *dest* without ever following a symlink that is already on disk."""

    def __init__(self, dest: Path, where: str) -> None:
        self.dest = dest
        self.where = where
        self.known_dirs: set[str] = {""}
        self.dir_times: dict[str, tuple[int, int]] = {}

    def _parent(self, rel: str) -> Path:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self.known_dirs:
                continue
            path = self.dest / sub
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise UnpackError(
                        f"member '{rel}' would be written through '{sub}', which is not a directory",
                        where=self.where,
                    )
            self.known_dirs.add(sub)
        return self.dest / rel

    def _clear(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def directory(self, rel: str, mode: int, mtime: int) -> None:
        if not rel:
            self.dir_times[""] = (mode, mtime)
            return
        path = self._parent(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        else:
            if not stat.S_ISDIR(st.st_mode):
                self._clear(path)
                os.mkdir(path, 0o755)
        self.known_dirs.add(rel)
        self.dir_times[rel] = (mode, mtime)

    def file(self, rel: str, mode: int, mtime: int, source: BinaryIO) -> None:
        path = self._parent(rel)
        self._clear(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, _READ_BLOCK)
            os.fchmod(out.fileno(), _file_mode(mode))
        os.utime(path, (mtime, mtime), follow_symlinks=False)

    def symlink(self, rel: str, target: str, mtime: int) -> None:
        path = self._parent(rel)
        self._clear(path)
        os.symlink(target, path)
        os.utime(path, (mtime, mtime), follow_symlinks=False)

    def hardlink(self, rel: str, target: str) -> None:
        path = self._parent(rel)
        self._clear(path)
        os.link(self.dest / target, path, follow_symlinks=False)

    def finish(self) -> None:
        # Directory times last and deepest first: writing a child changes its parent's mtime.
        for rel in sorted(self.dir_times, key=lambda r: r.count("/") + (1 if r else 0), reverse=True):
            mode, mtime = self.dir_times[rel]
            path = self.dest / rel if rel else self.dest
            os.chmod(path, _dir_mode(mode))
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _file_mode(mode: int) -> int:
    return (stat.S_IMODE(mode) | 0o600) & _FILE_MASK


def _dir_mode(mode: int) -> int:
    return (stat.S_IMODE(mode) | 0o700) & _FILE_MASK


def _strip(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    if path == prefix:
        return ""
    if path.startswith(prefix + "/"):
        return path[len(prefix) + 1 :]
    return None


def _extract_tar(
    archive: Path, fmt: str, members: list[Member], prefix: str, writer: _TreeWriter, where: str
) -> None:
    index = 0
    with _open_tar(archive, fmt, where) as tar:
        for info in tar:
            if not _normalise(info.name, where) and info.isdir():
                continue
            member = members[index]
            index += 1
            rel = _strip(member.path, prefix)
            if rel is None:
                continue
            _write_member(writer, member, rel, prefix, lambda info=info: tar.extractfile(info))


def _extract_zip(archive: Path, members: list[Member], prefix: str, writer: _TreeWriter) -> None:
    with zipfile.ZipFile(archive) as zf:
        by_path = {}
        for info in zf.infolist():
            by_path[_normalise(info.filename, "")] = info
        for member in members:
            rel = _strip(member.path, prefix)
            if rel is None:
                continue
            info = by_path[member.path]
            _write_member(writer, member, rel, prefix, lambda info=info: zf.open(info))


def _write_member(writer: _TreeWriter, member: Member, rel: str, prefix: str, opener) -> None:  # type: ignore[no-untyped-def]
    if member.kind == "dir":
        writer.directory(rel, member.mode, member.mtime)
    elif member.kind == "file":
        if not rel:
            return
        stream = opener()
        with stream if stream is not None else io.BytesIO() as source:
            writer.file(rel, member.mode, member.mtime, source)
    elif member.kind == "symlink":
        writer.symlink(rel, member.link, member.mtime)
    elif member.kind == "hardlink":
        target = _strip(member.link, prefix)
        if target is None:
            # The link's target was left out by extract_dir: materialise it as a copy is not possible
            # without the data, so refuse plainly.
            raise UnpackError(
                f"hardlink '{member.path}' points to '{member.link}', outside extract_dir '{prefix}'",
                where=writer.where,
            )
        writer.hardlink(rel, target)


def copy_source(source: str | os.PathLike[str], dest_dir: str | os.PathLike[str], name: str) -> Path:
    """Copy a non-archive source file into *dest_dir* as *name*, keeping its mtime, mode 0644."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if "/" in name or name in ("", ".", ".."):
        raise InputError(f"bad file name '{name}' for a copied source")
    target = dest_dir / name
    with contextlib.suppress(FileNotFoundError):
        if target.is_symlink() or target.is_dir():
            raise InputError(f"cannot copy source over '{target}'")
    shutil.copyfile(source, target, follow_symlinks=True)
    os.chmod(target, 0o644)
    st = os.stat(source)
    os.utime(target, (int(st.st_mtime), int(st.st_mtime)))
    return target
