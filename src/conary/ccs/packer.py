"""The worker side of packing, in two passes over the tree's files.

1. Survey: read each file once; split off its debug info; take its facts for the dependency scan;
   cut it into chunks and hash them. This is everything the manifest needs. A file smaller than
   `PackConfig.early_bytes` is compressed right there, from the bytes just read, into the worker's
   spool, as tar records (header, zstd frame, padding).
2. Compress: once the object order is known, the bigger files' objects are compressed in runs, in
   the order the archive stores them, framed the same way. The builder copies spooled records
   into the package in archive order while later runs are still being compressed, so the package
   reaches the disk while the CPU is still busy.

A file bigger than `PackConfig.split_bytes` is only cut by the worker that meets it: its chunks are
hashed in segments that the scheduler spreads over all workers.

Everything here is a function of file content and the configuration, never of which worker ran
it or when.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import zstandard
from pyfastcdc import FastCDC

from conary.ccs.components import ComponentRules, is_config_path
from conary.ccs.debuginfo import DebugSplitter, TreeItem, wants_split
from conary.ccs.deps import NO_FACTS, FileFacts, file_facts, needs_full_content
from conary.ccs.elfinfo import ElfInfo
from conary.ccs.errors import CcsError
from conary.ccs.limits import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CHUNK_THRESHOLD
from conary.ccs.manifest import EMPTY_SHA256, encode_regular_file
from conary.ccs.merkle import leaf_hash
from conary.ccs.tarfmt import make_header, padding

Stamp = tuple[int, int, int]  # (size, mtime_ns, inode): a file read twice must not change between
SpooledRange = tuple[str, int, int]  # tar records in a spool: (spool file name, offset, length)


def new_chunker() -> FastCDC:
    """The format-1 chunker: FastCDC 2020, min/avg/max 16/64/256 KiB, normalization 1, seed 0."""
    return FastCDC(CHUNK_AVG, min_size=CHUNK_MIN, max_size=CHUNK_MAX, normalized_chunking=1, seed=0)


@dataclass(frozen=True)
class PackConfig:
    """What every worker needs; picklable, so workers may be forked or started fresh."""

    workdir: str
    level: int
    epoch: int
    split_debug: bool
    rules: ComponentRules
    split_bytes: int  # files at least this big are cut by one worker and hashed in segments by all
    segment_bytes: int  # about this many bytes of chunks per segment task
    early_bytes: int  # files smaller than this are compressed by the survey


class PackedFile(NamedTuple):
    """A surveyed regular file: its chunks, its manifest record (CBOR) and Merkle leaf, its facts.

    *item* is where the bytes come from (a stripped copy, for split files). *debug_of* names the
    tree path a separated debug file belongs to, empty for every other file. A named tuple, not a
    frozen dataclass: thousands are made in the workers and rebuilt in the builder.
    """

    item: TreeItem
    sha256: str
    chunks: tuple[str, ...]
    lengths: tuple[int, ...]
    component: str
    record: bytes
    leaf: bytes
    facts: FileFacts
    stamp: Stamp
    debug_of: str = ""

    def __reduce__(self) -> tuple[object, ...]:
        # as one flat tuple, several times faster to pickle than with the TreeItem nested
        item = self.item
        facts = None if self.facts is NO_FACTS else self.facts
        return (
            _unpickle_packed,
            (item.path, item.mode, item.uid, item.gid, item.source, item.size, self.sha256, self.chunks,
             self.lengths, self.component, self.record, self.leaf, facts, self.stamp, self.debug_of),
        )  # fmt: skip


def _unpickle_packed(
    path: str,
    mode: int,
    uid: int,
    gid: int,
    source: str,
    size: int,
    sha256: str,
    chunks: tuple[str, ...],
    lengths: tuple[int, ...],
    component: str,
    record: bytes,
    leaf: bytes,
    facts: FileFacts | None,
    stamp: Stamp,
    debug_of: str,
) -> PackedFile:
    item = TreeItem(path, "file", mode, uid, gid, source, "", size)
    facts = facts or NO_FACTS
    return PackedFile(item, sha256, chunks, lengths, component, record, leaf, facts, stamp, debug_of)


@dataclass(frozen=True)
class CutFile:
    """A big file that has been cut but whose chunks are still to be hashed."""

    item: TreeItem
    facts: FileFacts
    stamp: Stamp
    cuts: tuple[tuple[int, int], ...]
    debug_of: str = ""


@dataclass(frozen=True)
class ObjectRun:
    """Consecutive objects of the archive that lie in one source file: (id, offset, length) each."""

    source: str
    stamp: Stamp
    objects: tuple[tuple[str, int, int], ...]


class SpooledRun(NamedTuple):
    """Records the survey compressed, one after another in a spool; *input* is their bytes before
    compression (for progress)."""

    spool: str
    offset: int
    length: int
    input: int

    @property
    def end(self) -> int:
        return self.offset + self.length


PlanStep = ObjectRun | SpooledRun  # the archive's objects, in order: to compress, or compressed


@dataclass(frozen=True)
class TaskResult:
    files: list[PackedFile | CutFile] = field(default_factory=list)
    chunk_ids: tuple[str, ...] = ()  # a segment's chunk ids, in order
    sha256: str = ""  # a whole-file hash
    spooled: SpooledRange = ("", 0, 0)  # a compress task's records
    early: list[tuple[str, SpooledRange]] = field(default_factory=list)  # objects the survey compressed


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def check_unchanged(source: str, stamp: Stamp, st: os.stat_result | None = None) -> None:
    """Fail if the file at *source* changed (size, mtime or inode) since it was surveyed."""
    if stamp_of(st or os.stat(source)) != stamp:
        raise changed_error(source)


def changed_error(source: str) -> CcsError:
    return CcsError(
        "file changed while it was being packed",
        where=source,
        hint="nothing may write to the tree while it is packed; run the build again",
    )


def packed_file(
    item: TreeItem,
    sha256: str,
    chunks: tuple[str, ...],
    lengths: tuple[int, ...],
    facts: FileFacts,
    stamp: Stamp,
    rules: ComponentRules,
    debug_of: str = "",
) -> PackedFile:
    """A surveyed file with its component, manifest record and Merkle leaf."""
    component = rules.component_of(item.path, is_symlink=False)
    config = is_config_path(item.path)
    record = encode_regular_file(
        item.path, item.mode, item.uid, item.gid, item.size, sha256, chunks, component, config
    )
    leaf = leaf_hash(record)
    return PackedFile(item, sha256, chunks, lengths, component, record, leaf, facts, stamp, debug_of)


class Packer:
    """One worker: its chunker, its zstd context, its debug splitter and its spool file."""

    def __init__(self, config: PackConfig) -> None:
        self.config = config
        self._cdc = new_chunker()
        self._zstd = zstandard.ZstdCompressor(
            level=config.level, write_content_size=True, write_checksum=False
        )
        self._splitter = DebugSplitter(Path(config.workdir) / "debug") if config.split_debug else None
        self._spool_name = f"spool-{os.getpid()}"
        self._spool_fd = -1
        self._spool_end = 0
        self._early: list[bytes] = []  # records of objects the survey compressed, not yet spooled
        self._early_ids: list[tuple[str, int]] = []  # (id, record length) of each
        self._early_seen: set[str] = set()

    def close(self) -> None:
        """Close the spool files (a worker process closes them by exiting)."""
        if self._spool_fd >= 0:
            os.close(self._spool_fd)
        self._spool_fd = -1

    # ------------------------------------------------------------ survey tasks

    def survey_files(self, items: list[TreeItem]) -> TaskResult:
        files: list[PackedFile | CutFile] = []
        for item in items:
            files += self._survey_item(item)
        return TaskResult(files=files, early=self._spool_early())

    def hash_segment(self, source: str, cuts: tuple[tuple[int, int], ...]) -> TaskResult:
        """The ids of consecutive chunks of a cut file."""
        start = cuts[0][0]
        data = self._read_range(source, start, cuts[-1][0] + cuts[-1][1])
        view = memoryview(data)
        ids = tuple(
            hashlib.sha256(view[offset - start : offset - start + length]).hexdigest()
            for offset, length in cuts
        )
        return TaskResult(chunk_ids=ids)

    def hash_file(self, source: str) -> TaskResult:
        with open(source, "rb") as handle:
            return TaskResult(sha256=hashlib.file_digest(handle, "sha256").hexdigest())

    # ------------------------------------------------------------ compress task

    def compress_runs(self, runs: list[ObjectRun]) -> TaskResult:
        """Compress the runs' objects in order, appended to this worker's spool as one range."""
        buffers: list[bytes] = []
        for run in runs:
            start = run.objects[0][1]
            last = run.objects[-1]
            data = self._read_range(run.source, start, last[1] + last[2], run.stamp)
            view = memoryview(data)
            for object_id, offset, length in run.objects:
                self._frame(object_id, view[offset - start : offset - start + length], buffers)
        return TaskResult(spooled=(self._spool_name, *self._append(buffers)))

    def _frame(self, object_id: str, content: bytes | memoryview, out: list[bytes]) -> int:
        """Append the object's tar record (header, zstd frame, padding) to *out*; returns its length."""
        blob = self._zstd.compress(content)
        header = make_header(f"objects/{object_id[:2]}/{object_id[2:]}", len(blob), self.config.epoch)
        pad = padding(len(blob))
        out += (header, blob, pad)
        return len(header) + len(blob) + len(pad)

    def _compress_early(self, data: bytes, chunks: tuple[str, ...], lengths: tuple[int, ...]) -> None:
        """Frame the file's objects from the bytes just read, in order, unless this worker has them
        already: reading the file again in the compress pass would cost more than it saves. A file's
        records, and those of the next files of a batch, lie one after another in the spool, so
        the builder copies them into the package in long ranges."""
        if len(chunks) == 1:
            if chunks[0] not in self._early_seen:
                self._early_seen.add(chunks[0])
                self._early_ids.append((chunks[0], self._frame(chunks[0], data, self._early)))
            return
        view = memoryview(data)
        offset = 0
        for chunk, length in zip(chunks, lengths, strict=True):
            if chunk not in self._early_seen:
                self._early_seen.add(chunk)
                framed = self._frame(chunk, view[offset : offset + length], self._early)
                self._early_ids.append((chunk, framed))
            offset += length

    def _spool_early(self) -> list[tuple[str, SpooledRange]]:
        if not self._early:
            return []
        offset, _ = self._append(self._early)
        early: list[tuple[str, SpooledRange]] = []
        for object_id, length in self._early_ids:
            early.append((object_id, (self._spool_name, offset, length)))
            offset += length
        self._early, self._early_ids = [], []
        return early

    # ------------------------------------------------------------ one file

    def _survey_item(self, item: TreeItem) -> list[PackedFile | CutFile]:
        surveyed, elf_split = self._survey_one(item, check_debug=self._splitter is not None)
        if surveyed is not None:
            return [surveyed]
        assert self._splitter is not None and elf_split is not None
        stripped, debug_item = self._splitter.split(item, elf_split)
        out = [self._survey_one(stripped, check_debug=False)[0]]
        out.append(self._survey_one(debug_item, check_debug=False, debug_of=item.path)[0])
        return out  # type: ignore[return-value]

    def _survey_one(
        self, item: TreeItem, *, check_debug: bool, debug_of: str = ""
    ) -> tuple[PackedFile | CutFile | None, ElfInfo | None]:
        """Survey a file, or return (None, its ELF facts) if its debug info must be split off first."""
        executable = bool(item.mode & 0o111)
        # os-level calls: for thousands of small files, file objects cost more than the reading
        fd = os.open(item.source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CcsError("not a regular file any more", where=item.source)
            item = item if item.size == st.st_size else _resized(item, st.st_size)
            if st.st_size >= self.config.split_bytes:
                return self._cut(item, fd, st, check_debug=check_debug, debug_of=debug_of)
            data = os.read(fd, st.st_size)
            while len(data) < st.st_size:  # a short read: rare, but allowed
                more = os.read(fd, st.st_size - len(data))
                if not more:
                    break
                data += more
            stamp = stamp_of(st)
            # the same inode, unchanged while it was read: the bytes hashed are one version of it
            check_unchanged(item.source, stamp, os.fstat(fd))
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            raise changed_error(item.source)
        content = (
            data if len(data) < CHUNK_THRESHOLD or needs_full_content(item.path, data[:256]) else data[:256]
        )
        facts = file_facts(item.path, content, executable=executable)
        if check_debug and wants_split(item.path, facts.elf):
            return None, facts.elf
        if not data:
            sha, chunks, lengths = EMPTY_SHA256, (), ()
        elif len(data) < CHUNK_THRESHOLD:
            sha = hashlib.sha256(data).hexdigest()
            chunks, lengths = (sha,), (len(data),)
        else:
            view = memoryview(data)
            cuts = [(c.offset, c.length) for c in self._cdc.cut_buf(view)]
            chunks = tuple(hashlib.sha256(view[o : o + n]).hexdigest() for o, n in cuts)
            lengths = tuple(n for _, n in cuts)
            sha = chunks[0] if len(chunks) == 1 else hashlib.sha256(data).hexdigest()
        if len(data) < self.config.early_bytes:
            self._compress_early(data, chunks, lengths)
        return packed_file(item, sha, chunks, lengths, facts, stamp, self.config.rules, debug_of), None

    def _cut(
        self, item: TreeItem, fd: int, st: os.stat_result, *, check_debug: bool, debug_of: str
    ) -> tuple[CutFile | None, ElfInfo | None]:
        executable = bool(item.mode & 0o111)
        mapped = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        try:
            with memoryview(mapped) as view:
                head = bytes(view[:256])
                content = view if needs_full_content(item.path, head) else head
                facts = file_facts(item.path, content, executable=executable)
                if check_debug and wants_split(item.path, facts.elf):
                    return None, facts.elf
                # pyfastcdc's chunks hold buffer exports: keep them inside this block
                cuts = tuple((c.offset, c.length) for c in self._cdc.cut_buf(view))
        finally:
            mapped.close()
        return CutFile(item, facts, stamp_of(st), cuts, debug_of), None

    # ------------------------------------------------------------ input and spool

    @staticmethod
    def _read_range(source: str, start: int, end: int, stamp: Stamp | None = None) -> bytes:
        with open(source, "rb") as handle:
            if stamp is not None:
                check_unchanged(source, stamp, os.fstat(handle.fileno()))
            data = os.pread(handle.fileno(), end - start, start)
        if len(data) != end - start:
            raise changed_error(source)
        return data

    def _append(self, buffers: list[bytes]) -> tuple[int, int]:
        """Append *buffers* to the spool; returns (offset, length) of what was written."""
        if self._spool_fd < 0:
            path = Path(self.config.workdir) / self._spool_name
            self._spool_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        start = position = self._spool_end
        first = 0
        while first < len(buffers):
            written = os.pwritev(self._spool_fd, buffers[first : first + 1024], position)  # IOV_MAX
            position += written
            while first < len(buffers) and written >= len(buffers[first]):
                written -= len(buffers[first])
                first += 1
            if written:
                buffers[first] = buffers[first][written:]
        self._spool_end = position
        return start, position - start


def _resized(item: TreeItem, size: int) -> TreeItem:
    return TreeItem(item.path, item.type, item.mode, item.uid, item.gid, item.source, item.target, size)


# ---------------------------------------------------------------- process entry points

_WORKER: Packer | None = None


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def init_worker(config: PackConfig) -> None:
    """Process-pool initializer. Workers ignore Ctrl-C: the builder stops them and reports once.
    They die with the builder: if it is killed, nothing else would ever end them (they wait on a
    queue whose write end they hold themselves)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the builder died before prctl took effect
        os._exit(1)
    global _WORKER
    _WORKER = Packer(config)


def run_task(method: str, *args: object) -> TaskResult:
    assert _WORKER is not None, "init_worker() has not run in this process"
    return getattr(_WORKER, method)(*args)
