"""Reading Debian binary packages (.deb) without dpkg: the ar container, control.tar and data.tar.

A .deb is an ar archive of ``debian-binary`` ("2.0"), ``control.tar[.gz|.xz|.zst]`` and
``data.tar[.gz|.xz|.zst|.bz2]``, in that order (deb(5)). The control archive holds the ``control``
stanza, ``conffiles``, ``md5sums`` and the maintainer scripts; the data archive holds the files.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import zstandard

from conary.debian.errors import DebFormatError
from conary.fetch.debian import parse_stanzas

AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60
# Maintainer scripts dpkg would run; a converted package records them and runs none.
MAINTAINER_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config")
# A control member bigger than this is not a control archive.
_CONTROL_MAX = 64 << 20


@dataclass(frozen=True)
class DebControl:
    """What the control archive says about a package."""

    fields: Mapping[str, str]
    conffiles: tuple[str, ...] = ()
    scripts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    triggers: str = ""  # the triggers control file: what dpkg would run ldconfig and the like for

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        object.__setattr__(self, "scripts", MappingProxyType(dict(self.scripts)))

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.fields.items():
            if key.lower() == name.lower():
                return value
        return default

    @property
    def package(self) -> str:
        return self.get("Package")

    @property
    def version(self) -> str:
        return self.get("Version")

    @property
    def architecture(self) -> str:
        return self.get("Architecture")


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int
    size: int


def ar_members(data: bytes | memoryview, where: str) -> list[ArMember]:
    """The members of an ar archive (the common format that dpkg writes; no symbol table)."""
    view = memoryview(data)
    if bytes(view[:8]) != AR_MAGIC:
        raise DebFormatError("not a Debian package (no ar header)", where=where)
    members = []
    pos = 8
    while pos < len(view):
        if pos + _AR_HEADER > len(view):
            raise DebFormatError("truncated ar member header", where=where)
        header = bytes(view[pos : pos + _AR_HEADER])
        if header[58:60] != b"`\n":
            raise DebFormatError(f"bad ar member header at offset {pos}", where=where)
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebFormatError(f"bad size in ar member {name!r}", where=where) from None
        start = pos + _AR_HEADER
        if start + size > len(view):
            raise DebFormatError(f"ar member {name!r} is truncated", where=where)
        members.append(ArMember(name, start, size))
        pos = start + size + (size & 1)
    return members


def _decompressed(name: str, blob: bytes, where: str) -> io.BufferedIOBase | io.BytesIO:
    """A readable stream of the tar inside member *name*, by its suffix."""
    raw = io.BytesIO(blob)
    if name.endswith(".tar"):
        return raw
    if name.endswith(".tar.xz"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if name.endswith(".tar.zst"):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    if name.endswith(".tar.gz"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".tar.bz2"):
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    raise DebFormatError(f"unsupported compression of member {name!r}", where=where,
                         hint="expected .tar, .tar.gz, .tar.xz, .tar.zst or .tar.bz2")  # fmt: skip


class DebFile:
    """One .deb, read into memory (the largest seed package is a few tens of MB)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        try:
            self._data = self.path.read_bytes()
        except OSError as exc:
            raise DebFormatError(f"cannot read package: {exc.strerror}", where=self.where) from None
        members = ar_members(self._data, self.where)
        names = [m.name for m in members]
        if not names or names[0] != "debian-binary":
            raise DebFormatError("first member is not debian-binary", where=self.where)
        version = self._member_bytes(members[0]).decode("ascii", "replace").strip()
        if not version.startswith("2."):
            raise DebFormatError(f"unsupported .deb format version {version!r}", where=self.where)
        self._control = next((m for m in members if m.name.startswith("control.tar")), None)
        self._payload = next((m for m in members if m.name.startswith("data.tar")), None)
        if self._control is None or self._payload is None:
            raise DebFormatError("missing control.tar or data.tar member", where=self.where)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self._data).hexdigest()

    def _member_bytes(self, member: ArMember) -> bytes:
        return self._data[member.offset : member.offset + member.size]

    def _tar(self, member: ArMember) -> tarfile.TarFile:
        stream = _decompressed(member.name, self._member_bytes(member), self.where)
        try:
            return tarfile.open(fileobj=stream, mode="r|")  # type: ignore[arg-type]
        except (tarfile.TarError, OSError, lzma.LZMAError, zstandard.ZstdError) as exc:
            raise DebFormatError(f"unreadable {member.name}: {exc}", where=self.where) from None

    def control(self) -> DebControl:
        assert self._control is not None
        files: dict[str, bytes] = {}
        try:
            with self._tar(self._control) as tar:
                for info in tar:
                    name = info.name.removeprefix("./")
                    if info.isfile() and "/" not in name and info.size <= _CONTROL_MAX:
                        reader = tar.extractfile(info)
                        files[name] = reader.read() if reader else b""
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error) as exc:
            raise DebFormatError(f"unreadable {self._control.name}: {exc}", where=self.where) from None
        if "control" not in files:
            raise DebFormatError("control.tar has no control file", where=self.where)
        stanzas = list(parse_stanzas(files["control"].decode("utf-8", "replace")))
        if not stanzas:
            raise DebFormatError("empty control file", where=self.where)
        fields = dict(stanzas[0])
        for required in ("Package", "Version", "Architecture"):
            if not fields.get(required):
                raise DebFormatError(f"control file has no {required} field", where=self.where)
        conffiles = tuple(
            line.strip()
            for line in files.get("conffiles", b"").decode("utf-8", "replace").splitlines()
            if line.strip()
        )
        scripts = {
            name: files[name].decode("utf-8", "replace") for name in MAINTAINER_SCRIPTS if name in files
        }
        triggers = files.get("triggers", b"").decode("utf-8", "replace")
        return DebControl(fields, conffiles, scripts, triggers)

    def data_members(self) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
        """Every member of data.tar in archive order, with the open archive to read its bytes from."""
        assert self._payload is not None
        try:
            with self._tar(self._payload) as tar:
                for info in tar:
                    yield info, tar
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, zlib.error) as exc:
            raise DebFormatError(f"unreadable {self._payload.name}: {exc}", where=self.where) from None
