"""The transaction engine: run a plan crash-safely, and finish or undo one a crash interrupted.

Order of a changeset (docs/runtime.md § Transactions):

 1. plan; every package fetched and verified; new content put in the content store
 2. journal written and fsynced
 3. pre scriptlets
 4. directories created, new files staged beside their targets, then one syncfs()
 5. removed entries moved aside, replaced ones hard-linked aside, staged ones renamed into place,
    modes changed, then one syncfs()
 6. database commit (the new state row carries the txid): the commit point
 7. entries kept aside are deleted, directories no package owns any more are removed if empty
 8. post scriptlets, then triggers once for the whole changeset
 9. journal deleted

A crash before 6 is undone (every action reversed, in reverse order); after 6 it is finished.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conary.runtime.actions import Action, MakeDir, PutFile, RemoveDir, RemoveFile, SetMeta
from conary.runtime.cas import ContentStore, decompress_frames, write_all
from conary.runtime.db import Database
from conary.runtime.errors import MissingContentError, UnsafePathError
from conary.runtime.journal import Journal, JournalRecord
from conary.runtime.plan import Plan
from conary.runtime.safefs import RootFS

CRASH_ENV = "CONARY_CRASH_AFTER_OPS"


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
    compressed frame to a new store object, which is renamed into the store only after the syncfs
    that makes it durable."""

    def __init__(self, cas: ContentStore, sources: ContentSources) -> None:
        self.cas = cas
        self.sources = sources
        self.pending: dict[str, Path] = {}
        self._lock = threading.Lock()

    def missing(self, wanted: Iterable[str]) -> list[str]:
        return sorted({s for s in wanted if s not in self.sources and not self.cas.has(s)})

    def fill(self, sha256: str, fd: int) -> None:
        with self._lock:
            tmp = self.pending.get(sha256)
        if tmp is not None:
            with open(tmp, "rb") as handle:
                for block in decompress_frames(handle):
                    write_all(fd, block)
            return
        if sha256 not in self.sources or self.cas.has(sha256):
            self.cas.copy_into(sha256, fd)
            return
        path, cfd = self.cas.new_tmp()
        try:
            for frame, data in self.sources[sha256]():
                write_all(fd, data)
                write_all(cfd, frame)
        finally:
            os.close(cfd)
        with self._lock:
            self.pending[sha256] = path

    def adopt(self) -> None:
        for sha256, tmp in sorted(self.pending.items()):
            self.cas.adopt(tmp, sha256)
        self.pending.clear()

    def discard(self) -> None:
        """Delete new objects not yet in the store (the changeset failed)."""
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()


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


def _changed_paths(actions: tuple[Action, ...]) -> set[str]:
    return {a.dest if isinstance(a, PutFile) else a.path for a in actions}


def _run_scriptlets(root: str, calls: tuple[tuple[str, str, str], ...], sandbox: str) -> list[str]:
    """Run scriptlet CALLS in order; a failure raises. Returns warnings."""
    if not calls:
        return []
    try:
        from conary.runtime.scriptlets import run_scriptlet
    except ImportError:
        return [f"scriptlets skipped (no scriptlet runner available): {', '.join(c[0] for c in calls)}"]
    for package, kind, script in calls:
        run_scriptlet(Path(root), package, kind, script, sandbox)
    return []


def _run_triggers(root: str, paths: set[str], sandbox: str) -> tuple[str, ...]:
    if not paths:
        return ()
    try:
        from conary.runtime.triggers import run_triggers
    except ImportError:
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
        missing = feeder.missing(
            a.sha256 for a in plan.actions if isinstance(a, PutFile) and a.type == "file"
        )
        if missing:
            raise MissingContentError(
                f"{len(missing)} file content(s) are not in the content store (first: {missing[0]})",
                where=self.root,
                hint="install the packages again from their .ccs files "
                "(content may have been garbage-collected)",
            )

    def run(self, plan: Plan, sandbox: str, sources: ContentSources | None = None) -> TxResult:
        feeder = ContentFeeder(self.cas, sources or {})
        self.check_content(plan, feeder)
        txid = secrets.token_hex(6)
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
            self.fs.syncfs()
            feeder.adopt()
            for kind in (RemoveFile, PutFile, SetMeta):
                for action in groups[kind]:
                    action.execute(ctx)
            self.fs.syncfs()
        except BaseException:
            feeder.discard()
            self._reverse(record)
            raise
        try:
            state = self.db.commit_state(txid, plan.summary, plan.packages, plan.target)
        except BaseException:
            if not self.db.is_committed(txid):
                self._reverse(record)
            raise
        self.counter()
        triggers, warnings = self._complete(record)
        return TxResult(txid, state, plan, triggers, (*pre_warnings, *warnings))

    def _stage(self, ctx: TxContext, puts: list[PutFile]) -> None:
        """Stage every new file; one content at a time per worker (two workers keep both cores busy
        while the other waits on I/O or decompression)."""
        by_content: dict[str, list[PutFile]] = {}
        for action in puts:
            key = action.sha256 if action.type == "file" else f"symlink:{action.dest}"
            by_content.setdefault(key, []).append(action)

        def stage_group(group: list[PutFile]) -> None:
            for action in group:
                action.stage(ctx)

        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in pool.map(stage_group, by_content.values()):
                pass

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

        # Deleting files is independent per file (and slow on a busy filesystem): several at once;
        # then empty directories, deepest first.
        with ThreadPoolExecutor(max_workers=4) as pool:
            for _ in pool.map(
                finish, [a for a in record.actions if not isinstance(a, RemoveDir)], chunksize=64
            ):
                pass
        for action in record.actions:
            if isinstance(action, RemoveDir):
                finish(action)
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
