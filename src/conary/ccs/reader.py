"""Open a .ccs file: verify signature, manifest, every object and every size before returning.

A Package keeps the file open and an index of verified object offsets; reading an object later
re-checks its hash (cheap next to decompression), so a file changed behind our back is caught.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import zstandard

from conary.ccs.errors import CcsError, CcsVerifyError
from conary.ccs.extract import Extracted, extract_entries
from conary.ccs.keys import PublicKey, SigningKey, as_public_key
from conary.ccs.limits import MAX_OBJECT_BYTES, Limits
from conary.ccs.manifest import decode_manifest, precheck_entry_budget
from conary.ccs.model import FileEntry, Manifest
from conary.ccs.sign import check_signature
from conary.ccs.tarfmt import Member, parse_members

_OBJECT_NAME = re.compile(r"^objects/([0-9a-f]{2})/([0-9a-f]{62})$")


@dataclass(frozen=True)
class ObjectRef:
    offset: int  # of the compressed bytes in the .ccs file
    length: int  # compressed length
    size: int  # uncompressed length (verified)


def _decompress(blob: bytes, object_id: str) -> bytes:
    """One zstd frame with a declared content size of at most MAX_OBJECT_BYTES, nothing after it."""
    where = f"object {object_id}"
    try:
        declared = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as err:
        raise CcsVerifyError(f"object is not a zstd frame ({err})", where=where)
    if declared < 0:
        raise CcsVerifyError("zstd frame does not declare its content size", where=where)
    if declared > MAX_OBJECT_BYTES:
        raise CcsVerifyError(
            f"object expands to {declared} bytes, over the object limit of {MAX_OBJECT_BYTES}", where=where
        )
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        data = dobj.decompress(blob)
    except zstandard.ZstdError as err:
        raise CcsVerifyError(f"object is corrupt: {err}", where=where)
    if not dobj.eof or dobj.unused_data or len(data) != declared:
        raise CcsVerifyError("object is not exactly one complete zstd frame", where=where)
    return data


TrustedKey = PublicKey | SigningKey | bytes | str | os.PathLike


class Package:
    """A verified, open .ccs file. Use as a context manager or call close()."""

    def __init__(
        self,
        path: Path,
        fd: int,
        manifest: Manifest,
        manifest_bytes: bytes,
        signer: PublicKey,
        members: list[Member],
        objects: dict[str, ObjectRef],
    ) -> None:
        self.path = path
        self._fd = fd
        self.manifest = manifest
        self.manifest_bytes = manifest_bytes
        self.signer = signer
        self.members = members
        self._objects = objects

    # -- lifecycle
    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Package:
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def fileno(self) -> int:
        if self._fd < 0:
            raise CcsError("package is closed", where=str(self.path))
        return self._fd

    # -- facts
    @property
    def signer_key_id(self) -> str:
        return self.signer.key_id

    @property
    def nevra(self) -> str:
        return self.manifest.nevra

    @property
    def object_ids(self) -> frozenset[str]:
        return frozenset(self._objects)

    def object_size(self, object_id: str) -> int:
        return self._objects[object_id].size

    def compressed_size(self, object_id: str) -> int:
        """The stored (zstd) length of an object."""
        return self._ref(object_id).length

    def compressed_object(self, object_id: str) -> bytes:
        """The stored (zstd) bytes of an object, as found in the archive (offset verified at open)."""
        ref = self._ref(object_id)
        return os.pread(self.fileno(), ref.length, ref.offset)

    # -- content
    def _ref(self, object_id: str) -> ObjectRef:
        try:
            return self._objects[object_id]
        except KeyError:
            raise CcsError(f"package has no object {object_id}", where=str(self.path))

    def read_object(self, object_id: str) -> bytes:
        """An object's uncompressed bytes, hash-checked again."""
        ref = self._ref(object_id)
        blob = os.pread(self.fileno(), ref.length, ref.offset)
        data = _decompress(blob, object_id)
        if len(data) != ref.size or hashlib.sha256(data).hexdigest() != object_id:
            raise CcsVerifyError("object changed since the package was verified", where=f"object {object_id}")
        return data

    def iter_file_data(self, entry: FileEntry) -> Iterator[bytes]:
        """The content of a regular file, one verified chunk at a time."""
        if entry.type != "file":
            raise CcsError(f"{entry.path} is a {entry.type}, not a regular file", where=str(self.path))
        for chunk in entry.chunks:
            yield self.read_object(chunk)

    def read_file(self, entry: FileEntry) -> bytes:
        return b"".join(self.iter_file_data(entry))

    def files(self, components: Iterable[str] | None = None) -> tuple[FileEntry, ...]:
        """The entries of the chosen components (default: the package's default components)."""
        wanted = self.select_components(components)
        return tuple(f for f in self.manifest.files if f.component in wanted)

    def select_components(self, components: Iterable[str] | None) -> frozenset[str]:
        if components is None:
            return frozenset(self.manifest.default_components)
        wanted = frozenset(components)
        known = {c.name for c in self.manifest.components}
        unknown = sorted(wanted - known)
        if unknown:
            raise CcsError(
                f"package has no component {', '.join(unknown)}",
                where=self.manifest.nevra,
                hint=f"components: {', '.join(sorted(known)) or 'none'}",
            )
        return wanted

    def extract(
        self,
        dest: str | os.PathLike[str],
        components: Iterable[str] | None = None,
        *,
        preserve_setid: bool = False,
    ) -> Extracted:
        """Write the chosen components (default: the default ones) below *dest*.

        Never follows a symlink already present in *dest*; refuses to replace existing non-directories
        (checked for every entry before the first byte is written), and refuses before writing when
        the declared sizes do not fit in the free space of *dest*'s filesystem. Regular files are
        written without setuid/setgid bits unless PRESERVE_SETID, which a caller passes only for a
        signer it trusts.
        """
        return extract_entries(self, Path(dest), self.files(components), preserve_setid=preserve_setid)


def _open_fd(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CcsError("package not found", where=str(path))
    except OSError as err:
        raise CcsError(f"cannot open package: {err.strerror}", where=str(path))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CcsError("package is not a regular file", where=str(path))
    return fd


def open_package(
    path: str | os.PathLike[str],
    trusted_keys: Sequence[TrustedKey] | None = None,
    *,
    limits: Limits | None = None,
    workers: int | None = None,
) -> Package:
    """Verify a .ccs file completely and return it open. Raises CcsVerifyError naming the first flaw.

    Order: tar structure and budgets, signature (against trusted_keys if given, else the embedded
    key), manifest, object set, every object's hash and size, every file's size and sha256.
    """
    path = Path(path)
    limits = limits or Limits()
    trusted = None if trusted_keys is None else [as_public_key(k) for k in trusted_keys]
    fd = _open_fd(path)
    try:
        package = _verify(path, fd, trusted, limits, workers or os.cpu_count() or 1)
    except CcsError as err:
        os.close(fd)
        # Region names ("archive", "MANIFEST.sig", "objects/ab/...") mean little without the file.
        err.where = f"{path}: {err.where}" if err.where else str(path)
        raise
    except BaseException:
        os.close(fd)
        raise
    return package


def _verify(path: Path, fd: int, trusted: list[PublicKey] | None, limits: Limits, workers: int) -> Package:
    size = os.fstat(fd).st_size
    members = parse_members(
        fd,
        size,
        max_members=limits.max_objects + 2,
        budgets={
            "MANIFEST": limits.max_manifest_bytes,
            "MANIFEST.sig": limits.max_signature_bytes,
            "*": limits.max_compressed_object_bytes,
        },
    )
    if len(members) < 2 or members[0].name != "MANIFEST" or members[1].name != "MANIFEST.sig":
        found = ", ".join(m.name for m in members[:2]) or "nothing"
        raise CcsVerifyError(
            f"archive must start with MANIFEST, MANIFEST.sig (found {found})", where=str(path)
        )
    manifest_bytes = os.pread(fd, members[0].size, members[0].data_offset)
    signature_bytes = os.pread(fd, members[1].size, members[1].data_offset)
    sig = check_signature(manifest_bytes, signature_bytes, trusted)
    precheck_entry_budget(manifest_bytes, limits)
    manifest = decode_manifest(manifest_bytes, limits)
    if members[0].mtime != manifest.source_date_epoch:
        raise CcsVerifyError(
            f"archive entry mtimes ({members[0].mtime}) differ from the manifest's source_date_epoch "
            f"({manifest.source_date_epoch})",
            where=str(path),
        )

    referenced: dict[str, str] = {}
    for entry in manifest.files:
        for chunk in entry.chunks:
            referenced.setdefault(chunk, entry.path)
    stored: dict[str, Member] = {}
    for member in members[2:]:
        m = _OBJECT_NAME.match(member.name)
        if m is None:
            raise CcsVerifyError(f"unexpected archive entry {member.name!r}", where=str(path))
        object_id = m.group(1) + m.group(2)
        if object_id in stored:
            raise CcsVerifyError("duplicate object in archive", where=f"object {object_id}")
        if object_id not in referenced:
            raise CcsVerifyError(
                "archive holds an object that no file uses (extra object)", where=f"object {object_id}"
            )
        stored[object_id] = member
    for object_id, owner in referenced.items():
        if object_id not in stored:
            raise CcsVerifyError(f"object {object_id} is missing from the archive", where=owner)
    if list(stored) != list(referenced):
        raise CcsVerifyError("objects are not in first-use order", where=str(path))

    # One pass over the files: every chunk is decompressed and hashed (each object once, unless a
    # multi-chunk file needs its data again for the whole-file hash), sizes are added up.
    objects: dict[str, ObjectRef] = {}
    lock = threading.Lock()

    def load(object_id: str) -> bytes:
        member = stored[object_id]
        blob = os.pread(fd, member.size, member.data_offset)
        if len(blob) != member.size:
            raise CcsVerifyError("archive changed while being verified", where=str(path))
        data = _decompress(blob, object_id)
        if hashlib.sha256(data).hexdigest() != object_id:
            raise CcsVerifyError(
                "object content does not match its id (sha256 mismatch)", where=f"object {object_id}"
            )
        with lock:
            objects[object_id] = ObjectRef(member.data_offset, member.size, len(data))
        return data

    def check_file(entry: FileEntry) -> None:
        if len(entry.chunks) == 1:
            size = objects[entry.chunks[0]].size if entry.chunks[0] in objects else len(load(entry.chunks[0]))
            if entry.sha256 != entry.chunks[0]:
                raise CcsVerifyError("file sha256 does not match its content", where=entry.path)
        else:
            digest = hashlib.sha256()
            size = 0
            for chunk in entry.chunks:
                data = load(chunk)
                digest.update(data)
                size += len(data)
            if entry.chunks and digest.hexdigest() != entry.sha256:
                raise CcsVerifyError("file sha256 does not match its content", where=entry.path)
        if size != entry.size:
            raise CcsVerifyError(
                f"size lie: manifest says {entry.size} bytes but the content holds {size}", where=entry.path
            )

    regular = [f for f in manifest.files if f.type == "file"]
    # Largest first keeps both workers busy to the end; errors are reported in path order.
    order = sorted(range(len(regular)), key=lambda i: -regular[i].size)
    if workers == 1 or len(regular) < 32:  # small packages: threads cost more than they save
        for entry in regular:
            check_file(entry)
        return Package(path, fd, manifest, manifest_bytes, sig.public_key, members, objects)
    with ThreadPoolExecutor(workers) as pool:
        futures = {i: pool.submit(check_file, regular[i]) for i in order}
        try:
            for i in range(len(regular)):
                futures[i].result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return Package(path, fd, manifest, manifest_bytes, sig.public_key, members, objects)
