"""The transaction engine: run a plan crash-safely, and finish or undo one a crash interrupted.

Order of a changeset (docs/runtime.md § Transactions):

 1. plan; every package fetched and verified
 2. journal written and fsynced
 3. pre scriptlets
 4. directories created, new files staged beside their targets (new content also appended to this
    changeset's packs in the content store), then one syncfs()
 5. replaced entries hard-linked aside, staged ones renamed into place, modes changed, then one
    syncfs()
 6. database commit (the new state row carries the txid, the new objects' index rows come with
    it): the commit point
 7. entries kept aside are deleted, directories no package owns any more are removed if empty
 8. post scriptlets, then triggers once for the whole changeset
 9. journal deleted

A crash before 6 is undone (every action reversed, in reverse order); after 6 it is finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conary.fsutil import ensure_free_space, free_bytes
from conary.runtime.actions import Action, MakeDir, PutFile, RemoveDir, RemoveFile, SetMeta
from conary.runtime.cas import ContentStore, Location, PackWriter, write_all
from conary.runtime.db import Database, PackedObject
from conary.runtime.errors import ChangesetAbortedError, MissingContentError, UnsafePathError
from conary.runtime.journal import Journal, JournalRecord
from conary.runtime.layout import CAS_DIR
from conary.runtime.plan import Plan
from conary.runtime.safefs import RootFS, parent_of
from conary.runtime.scriptlets import run_scriptlet
from conary.runtime.triggers import run_triggers

CRASH_ENV = "CONARY_CRASH_AFTER_OPS"
_STAGE_BATCH = 32  # contents per work item: few enough items that queueing them costs little
_STAGE_WORKERS = 2  # staging threads, each with its lane of batches and its pack
_DIR_BATCH = 64  # deletions per work item after the commit
_DELETE_WORKERS = 16  # threads deleting after the commit: they wait on the device, not the CPU
_FLUSH_INTERVAL = 0.02  # seconds between the background syncfs() calls while staging


class OpCounter:
    """Counts filesystem mutations; CONARY_CRASH_AFTER_OPS=N sends SIGKILL to this process after the
    Nth one (the crash tests use it to stop a real run at every point)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        raw = os.environ.get(CRASH_ENV, "")
        self.crash_after = int(raw) if raw.isdigit() else None

    def __call__(self) -> None:
        with self._lock:
            self.count += 1
            if self.crash_after is not None and self.count >= self.crash_after:
                os.kill(os.getpid(), signal.SIGKILL)


# sha256 -> a callable yielding (compressed frame, its verified content) for each chunk of the file.
ContentSources = Mapping[str, Callable[[], Iterable[tuple[bytes, bytes]]]]


class ContentFeeder:
    """Where staged file content comes from: the content store, or a package whose content is not in
    the store yet. Such content is read once: each chunk's content goes to the staged file and its
    compressed frame to this changeset's pack (one per staging worker), whose index rows the commit
    adds to the store."""

    def __init__(self, cas: ContentStore, sources: ContentSources, txid: str) -> None:
        self.cas = cas
        self.sources = sources
        self.txid = txid
        self.locations: dict[str, Location] = {}
        self._writers: list[PackWriter] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def prepare(self, wanted: Iterable[str]) -> list[str]:
        """Find the stored objects among WANTED (before staging: the index is read on this thread).
        Returns the contents neither a package nor the store has."""
        wanted = set(wanted)
        self.locations = self.cas.locate(wanted)
        return sorted(s for s in wanted if s not in self.sources and s not in self.locations)

    def use_lane(self, lane: int) -> None:
        """The calling thread stages lane LANE of the changeset: its new objects go to the pack
        TXID-LANE, so what each pack holds, in what order, is decided by the plan, not by which
        thread ran first (the same install gives the same store, byte for byte)."""
        self._local.lane = lane

    def _writer(self) -> PackWriter:
        writer: PackWriter | None = getattr(self._local, "writer", None)
        if writer is None:
            lane = getattr(self._local, "lane", None)
            with self._lock:
                suffix = str(lane) if lane is not None else f"t{len(self._writers)}"
                writer = self.cas.new_pack(f"{self.txid}-{suffix}")
                self._writers.append(writer)
            self._local.writer = writer
        return writer

    def fill(self, sha256: str, fd: int) -> None:
        location = self.locations.get(sha256)
        if location is not None:
            self.cas.copy_from(location, sha256, fd)
            return
        if sha256 not in self.sources:
            raise self.cas.missing_error(sha256)
        writer = self._writer()
        start = writer.offset
        for frame, data in self.sources[sha256]():
            write_all(fd, data)
            writer.write(frame)
        obj = writer.record(sha256, start)
        # Later files with this content (the same worker stages them) read it back from the pack.
        self.locations[sha256] = Location(str(writer.path), obj.offset, obj.length)

    def close(self) -> list[PackedObject]:
        """Close the packs; the objects they hold, for the commit to index."""
        writers = sorted(self._writers, key=lambda w: w.name)  # index rows in a fixed order
        for writer in writers:
            writer.close()
        return [obj for writer in writers for obj in writer.added]

    def discard(self) -> None:
        """Delete this changeset's packs (it failed before its commit)."""
        for writer in self._writers:
            writer.close()
            self.cas.unlink(writer.path)
        self._writers.clear()


@dataclass
class TxContext:
    fs: RootFS
    cas: ContentStore
    txid: str
    mutated: Callable[[], None]
    feeder: ContentFeeder | None = None

    def copy_object(self, sha256: str, fd: int) -> None:
        if self.feeder is not None:
            self.feeder.fill(sha256, fd)
        else:
            self.cas.copy_into(sha256, fd)


@dataclass(frozen=True)
class TxResult:
    txid: str
    state: int
    plan: Plan
    triggers: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def _split(actions: tuple[Action, ...]) -> dict[type, list[Action]]:
    groups: dict[type, list[Action]] = {MakeDir: [], PutFile: [], RemoveFile: [], SetMeta: [], RemoveDir: []}
    for action in actions:
        groups[type(action)].append(action)
    return groups


def _path_of(action: Action) -> str:
    return action.dest if isinstance(action, PutFile) else action.path


def _in_parallel(fn: Callable[[Action], None], actions: list[Action], *, workers: int) -> None:
    """Call FN on every action, with WORKERS threads taking batches of whole directories (so they
    seldom wait on one directory's lock, and few batches keep the queueing cheap). The first error
    is raised once every batch has finished."""
    by_dir: dict[str, list[Action]] = {}
    for action in actions:
        by_dir.setdefault(parent_of(_path_of(action)), []).append(action)
    batches: list[list[Action]] = [[]]
    for group in by_dir.values():
        if len(batches[-1]) >= _DIR_BATCH:
            batches.append([])
        batches[-1].extend(group)

    def run(batch: list[Action]) -> None:
        for action in batch:
            fn(action)

    if len(batches) == 1:
        run(batches[0])
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(run, batches):
            pass


def _keeps_old(action: Action) -> bool:
    """Whether ACTION set an old entry aside that finishing deletes (the other puts finish with
    nothing to do)."""
    return isinstance(action, PutFile) and action.existed


def _changed_paths(actions: tuple[Action, ...]) -> set[str]:
    return {_path_of(a) for a in actions}


def _run_scriptlets(root: str, calls: tuple[tuple[str, str, str], ...], sandbox: str) -> list[str]:
    """Run scriptlet CALLS in order; a failure raises. Returns warnings."""
    if not calls:
        return []
    for package, kind, script in calls:
        run_scriptlet(Path(root), package, kind, script, sandbox)
    return []


def _run_triggers(root: str, paths: set[str], sandbox: str) -> tuple[str, ...]:
    if not paths:
        return ()
    return tuple(run_triggers(Path(root), paths, sandbox))


class Engine:
    def __init__(
        self, root: str, fs: RootFS, db: Database, cas: ContentStore, journal: Journal, counter: OpCounter
    ) -> None:
        self.root = root
        self.fs = fs
        self.db = db
        self.cas = cas
        self.journal = journal
        self.counter = counter

    def _ctx(self, txid: str) -> TxContext:
        return TxContext(self.fs, self.cas, txid, self.counter)

    def check_content(self, plan: Plan, feeder: ContentFeeder) -> None:
        missing = feeder.prepare(
            a.sha256 for a in plan.actions if isinstance(a, PutFile) and a.type == "file"
        )
        if missing:
            raise MissingContentError(
                f"{len(missing)} file content(s) are not in the content store (first: {missing[0]})",
                where=self.root,
                hint="install the packages again from their .ccs files "
                "(content may have been garbage-collected)",
            )

    def _txid(self, plan: Plan) -> str:
        """A random id; under SOURCE_DATE_EPOCH (a reproducible build, such as an image's root) one
        derived from the root's state and the plan, so that the DB and pack names are reproducible.
        The state number keeps it unique within the root."""
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        if not epoch.isdigit():
            return secrets.token_hex(6)
        text = "\0".join(
            [epoch, str(self.db.current_state()), plan.operation, plan.summary]
            + [f"{p.manifest_id}:{','.join(p.components)}" for p in plan.packages]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _filesystem_of(self, directory: str, cache: dict[str, int]) -> int:
        """A descriptor of the filesystem DIRECTORY is (or, when it is still to be made, will be) on."""
        fd = cache.get(directory)
        if fd is None:
            try:
                fd = self.fs.dir_fd(directory)
            except FileNotFoundError:
                fd = self._filesystem_of(parent_of(directory), cache)
            cache[directory] = fd
        return fd

    def check_space(self, plan: Plan, feeder: ContentFeeder, stored_bytes: Mapping[str, int]) -> None:
        """Refuse before the journal, and so before any write, when what the changeset stages does
        not fit: every new file's declared size on the filesystem of its directory, and the
        compressed size of new content (STORED_BYTES) on the content store's. Old entries are freed
        only after the commit, so they count for nothing here."""
        needed: dict[int, tuple[int, int, str]] = {}  # st_dev -> (fd, bytes, a directory on it)
        cache: dict[str, int] = {}

        def add(directory: str, size: int) -> None:
            fd = self._filesystem_of(directory, cache)
            dev = os.fstat(fd).st_dev
            _, total, shown = needed.get(dev, (fd, 0, directory))
            if directory.count("/") < shown.count("/"):
                shown = directory  # name a filesystem mounted inside the root by its top directory
            needed[dev] = (fd, total + size, shown)

        for action in plan.actions:
            if isinstance(action, PutFile) and action.type == "file":
                owned = plan.target.get(action.path)
                add(parent_of(action.dest), owned.node.size if owned is not None else 0)
        new_content = {s for s in feeder.sources if s not in feeder.locations}
        add(CAS_DIR + "/packs", sum(stored_bytes.get(s, 0) for s in new_content))
        root_dev = os.fstat(self.fs.fd).st_dev
        for dev, (fd, total, directory) in needed.items():
            ensure_free_space(
                total,
                free_bytes(fd),
                where=self.root if dev == root_dev else os.path.join(self.root, directory),
                what=f"{plan.operation} ({plan.summary})",
            )

    def run(
        self,
        plan: Plan,
        sandbox: str,
        sources: ContentSources | None = None,
        stored_bytes: Mapping[str, int] | None = None,
    ) -> TxResult:
        """Run PLAN as one changeset. SOURCES give content the store lacks; STORED_BYTES their
        compressed sizes (what the store's pack will grow by)."""
        txid = self._txid(plan)
        feeder = ContentFeeder(self.cas, sources or {}, txid)
        self.check_content(plan, feeder)
        self.check_space(plan, feeder, stored_bytes or {})
        record = JournalRecord(
            txid,
            plan.operation,
            plan.summary,
            plan.actions,
            tuple((p.manifest_id, p.components) for p in plan.packages),
            plan.scriptlets_post,
            sandbox,
        )
        self.journal.write(record)
        self.counter()
        ctx = self._ctx(txid)
        ctx.feeder = feeder
        groups = _split(plan.actions)
        try:
            pre_warnings = _run_scriptlets(self.root, plan.scriptlets_pre, sandbox)
            for action in groups[MakeDir]:
                action.execute(ctx)
            self._stage(ctx, groups[PutFile])  # type: ignore[arg-type]
            added = feeder.close()
            # A changeset that only removes (RemoveFile and RemoveDir do nothing before the commit)
            # has nothing to make durable here: it skips both flushes.
            writes = bool(groups[MakeDir] or groups[PutFile] or groups[SetMeta])
            if writes:
                self.fs.syncfs()
            for kind in (RemoveFile, PutFile, SetMeta):
                for action in groups[kind]:
                    action.execute(ctx)
            if writes:
                self.fs.syncfs()
        except OSError as err:
            feeder.discard()
            self._reverse(record)
            raise ChangesetAbortedError.from_os_error(err, plan.operation, self.root) from err
        except BaseException:
            feeder.discard()
            self._reverse(record)
            raise
        try:
            state = self.db.commit_state(txid, plan.summary, plan.packages, plan.target, added)
        except BaseException:
            if not self.db.is_committed(txid):
                feeder.discard()
                self._reverse(record)
            raise
        self.counter()
        triggers, warnings = self._complete(record)
        return TxResult(txid, state, plan, triggers, (*pre_warnings, *warnings))

    def _stage(self, ctx: TxContext, puts: list[PutFile]) -> None:
        """Stage every new file with two workers (decompression, hashing and writes release the GIL,
        so both cores stay busy). The contents, in path order, are cut into batches dealt to the
        workers in turn (a fixed lane each, so each lane's pack is the same in every run of the
        same plan); the files of one content stay with one worker, which writes that content to
        the store once.

        Meanwhile a third thread keeps calling syncfs(), so the disk writes what is staged while
        the workers go on, and the syncfs after staging finds little left to wait for."""
        by_content: dict[str, list[PutFile]] = {}
        for action in puts:
            key = action.sha256 if action.type == "file" else f"symlink:{action.dest}"
            by_content.setdefault(key, []).append(action)
        groups = list(by_content.values())
        batches = [groups[i : i + _STAGE_BATCH] for i in range(0, len(groups), _STAGE_BATCH)]

        def stage_lane(lane: int, batches: list[list[list[PutFile]]]) -> None:
            if ctx.feeder is not None:
                ctx.feeder.use_lane(lane)
            for batch in batches:
                for group in batch:
                    for action in group:
                        action.stage(ctx)

        done = threading.Event()

        def flush() -> None:
            # Only a head start: an error here is the final syncfs()'s to report.
            with contextlib.suppress(OSError):
                while not done.wait(_FLUSH_INTERVAL):
                    self.fs.syncfs()

        flusher = threading.Thread(target=flush, name="conary-flush", daemon=True)
        if len(groups) > _STAGE_BATCH:
            flusher.start()
        try:
            with ThreadPoolExecutor(max_workers=_STAGE_WORKERS) as pool:
                lanes = range(_STAGE_WORKERS)
                for done_lane in [pool.submit(stage_lane, i, batches[i::_STAGE_WORKERS]) for i in lanes]:
                    done_lane.result()
        finally:
            done.set()
            if flusher.is_alive():
                flusher.join()

    def _reverse(self, record: JournalRecord) -> None:
        ctx = self._ctx(record.txid)
        for action in reversed(record.actions):
            try:
                action.reverse(ctx)
            except UnsafePathError:
                continue  # a parent became a symlink: nothing of this transaction can be behind it
        self.fs.syncfs()
        self.journal.close(record.txid)
        self.counter()

    def _complete(self, record: JournalRecord) -> tuple[tuple[str, ...], tuple[str, ...]]:
        ctx = self._ctx(record.txid)

        def finish(action: Action) -> None:
            try:
                action.finish(ctx)
            except UnsafePathError:
                pass  # a parent became a symlink: nothing of this transaction can be behind it

        # Deleting files is independent per file, and each unlink mostly waits on the device (a
        # filesystem mounted with `discard` trims the freed blocks before unlink returns): measured
        # here, 5,000 unlinks take 13 s one at a time, 1.0 s with 4 threads and 0.5 s with 16-32.
        # So many workers, each taking whole directories at a time (so they seldom wait for one
        # directory's lock).
        deletions = [a for a in record.actions if isinstance(a, RemoveFile) or _keeps_old(a)]
        _in_parallel(finish, deletions, workers=_DELETE_WORKERS)
        # Directories one depth at a time, deepest first (a parent only empties once its children
        # are gone); those of one depth in parallel, since an rmdir frees a block too.
        by_depth: dict[int, list[Action]] = {}
        for action in record.actions:
            if isinstance(action, RemoveDir):
                by_depth.setdefault(action.path.count("/"), []).append(action)
        for depth in sorted(by_depth, reverse=True):
            _in_parallel(finish, by_depth[depth], workers=_DELETE_WORKERS)
        warnings: list[str] = []
        if not self.journal.post_done(record.txid):
            try:
                warnings += _run_scriptlets(self.root, record.scriptlets_post, record.sandbox)
            except Exception as err:  # the changeset is committed; a failing post scriptlet is reported
                warnings.append(str(err))
            self.journal.mark_post_done(record.txid)
        triggers: tuple[str, ...] = ()
        try:
            triggers = _run_triggers(self.root, _changed_paths(record.actions), record.sandbox)
        except Exception as err:
            # A failed handler does not undo the others: report what ran, and the failure.
            triggers = getattr(err, "ran", ())
            warnings.append(str(err))
        self.journal.close(record.txid)
        self.counter()
        return triggers, tuple(warnings)

    def pending(self) -> list[str]:
        """What recovery would do, one line per interrupted transaction (nothing is changed)."""
        return [
            f"would {'complete' if self.db.is_committed(r.txid) else 'roll back'} interrupted transaction "
            f"{r.txid} ({r.summary})"
            for r in self.journal.pending()
        ]

    def recover(self) -> list[str]:
        """Finish or undo every interrupted transaction. Returns one line per transaction."""
        done = []
        for record in self.journal.pending():
            if self.db.is_committed(record.txid):
                _, warnings = self._complete(record)
                done.append(f"completed interrupted transaction {record.txid} ({record.summary})")
                done += [f"warning: {w}" for w in warnings]
            else:
                self._reverse(record)
                done.append(f"rolled back interrupted transaction {record.txid} ({record.summary})")
        for leftover in self.journal.leftovers():
            leftover.unlink()
        for leftover in self.cas.leftovers():
            leftover.unlink()
        return done
