"""Spread the two packing passes over worker processes and gather their results.

Survey: biggest files go first, so the last task to finish is a small one. Small files travel in
batches, one task each, to keep the per-task cost of a process pool low. A file of `split_bytes`
or more comes back from its worker cut but not hashed; its segments and its whole-file hash then
jump the queue, so one giant file still keeps every worker busy.

Compress: the archive's objects, in archive order, go out in runs of about COMPRESS_TASK_BYTES;
finished runs are handed back in that same order as soon as every earlier one is done.

A tree too small to repay starting processes, a call with one worker, or a caller running other
threads gets its package packed in this process, by the same code.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from conary.ccs.debuginfo import TreeItem
from conary.ccs.errors import CcsError
from conary.ccs.limits import MiB
from conary.ccs.packer import (
    CutFile,
    ObjectRun,
    PackConfig,
    PackedFile,
    Packer,
    SpooledRange,
    TaskResult,
    check_unchanged,
    file_record,
    init_worker,
    run_task,
)

BATCH_BYTES, BATCH_FILES = 4 * MiB, 256  # smaller files are surveyed in batches of this size
COMPRESS_TASK_BYTES = 8 * MiB  # uncompressed bytes of objects per compress task
COMPRESS_LOOKAHEAD = 4  # compress tasks may run this many times the survey's tasks in flight ahead
PARALLEL_MIN_BYTES = 16 * MiB  # below this, starting worker processes costs more than it saves


class Workers(Protocol):
    limit: int  # tasks worth keeping in flight

    def submit(self, method: str, *args: object) -> Future[TaskResult]: ...


class _InProcess:
    """Runs each task at once in this process; the futures it returns are already done."""

    limit = 1

    def __init__(self, config: PackConfig) -> None:
        self._packer = Packer(config)

    def submit(self, method: str, *args: object) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        try:
            future.set_result(getattr(self._packer, method)(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        self._packer.close()


class _Processes:
    def __init__(self, pool: ProcessPoolExecutor, workers: int) -> None:
        self._pool = pool
        self.limit = 2 * workers

    def submit(self, method: str, *args: object) -> Future[TaskResult]:
        return self._pool.submit(run_task, method, *args)


@contextmanager
def _in_process(config: PackConfig) -> Iterator[Workers]:
    here = _InProcess(config)
    try:
        yield here
    finally:
        here.close()


@contextmanager
def packing_workers(config: PackConfig, workers: int, total_bytes: int) -> Iterator[Workers]:
    """Worker processes for one package, or this process: for small trees, for one worker, and
    when the caller runs other threads. Forking then could copy a lock another thread holds into
    the workers, and starting fresh interpreters instead would run the caller's main module again
    in each; packing on one core is slower but always safe."""
    if workers <= 1 or total_bytes < PARALLEL_MIN_BYTES or threading.active_count() > 1:
        with _in_process(config) as here:
            yield here
        return
    try:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=init_worker,
            initargs=(config,),
        )
    except (ImportError, NotImplementedError, OSError):
        # no working POSIX semaphores (a chroot or container without /dev/shm): pack here instead
        with _in_process(config) as here:
            yield here
        return
    try:
        yield _Processes(pool, workers)
    except BrokenProcessPool as exc:
        pool.shutdown(wait=True, cancel_futures=True)
        raise CcsError(
            "a packing worker process died", hint="the system may be out of memory; see the kernel log"
        ) from exc
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# ---------------------------------------------------------------- survey


@dataclass
class _CutJob:
    """A big file's outstanding segment hashes and whole-file hash."""

    cut: CutFile
    parts: list[tuple[str, ...]]
    sha256: str = ""
    waiting: int = 0


_Task = tuple[str, tuple[object, ...], "_CutJob | None", int]


Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes in all)


@dataclass
class Survey:
    files: list[PackedFile]
    early: dict[str, SpooledRange]  # objects compressed during the survey, by id


def survey(
    workers: Workers, items: list[TreeItem], config: PackConfig, progress: Progress | None = None
) -> Survey:
    """Survey every regular file in *items* (debug files split off come back as files of their own)."""
    order = sorted(items, key=lambda i: (-i.size, i.path))
    total = sum(i.size for i in order)
    surveyed_bytes = 0
    queue: deque[_Task] = deque(("survey_files", (batch,), None, 0) for batch in _batches(order))
    urgent: deque[_Task] = deque()
    inflight: dict[Future[TaskResult], tuple[_CutJob | None, int]] = {}
    files: list[PackedFile] = []
    early: dict[str, SpooledRange] = {}
    while queue or urgent or inflight:
        while len(inflight) < workers.limit and (urgent or queue):
            method, args, job, index = (urgent or queue).popleft()
            inflight[workers.submit(method, *args)] = (job, index)
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        for future in done:
            job, index = inflight.pop(future)
            task = future.result()
            for object_id, spooled in task.early:
                early.setdefault(object_id, spooled)
            if job is None:
                for surveyed in task.files:
                    if isinstance(surveyed, CutFile):
                        urgent.extend(_cut_tasks(surveyed, config))
                    else:
                        files.append(surveyed)
                        surveyed_bytes += surveyed.item.size
                if progress:
                    progress("survey", min(surveyed_bytes, total), total)
                continue
            if index < 0:
                job.sha256 = task.sha256
            else:
                job.parts[index] = task.chunk_ids
            job.waiting -= 1
            if job.waiting == 0:
                files.append(_finish(job, config))
                surveyed_bytes += job.cut.item.size
                if progress:
                    progress("survey", min(surveyed_bytes, total), total)
    return Survey(files, early)


def _cut_tasks(cut: CutFile, config: PackConfig) -> Iterator[_Task]:
    segments = _segments(cut.cuts, config.segment_bytes)
    job = _CutJob(cut, [()] * len(segments), waiting=len(segments) + 1)
    source = cut.item.source
    yield "hash_file", (source,), job, -1
    for index, segment in enumerate(segments):
        yield "hash_segment", (source, segment), job, index


def _finish(job: _CutJob, config: PackConfig) -> PackedFile:
    cut = job.cut
    check_unchanged(cut.item.source, cut.stamp)
    chunks = tuple(c for part in job.parts for c in part)
    entry, record = file_record(cut.item, job.sha256, chunks, config.rules)
    lengths = tuple(n for _, n in cut.cuts)
    return PackedFile(cut.item, entry, record, cut.facts, lengths, cut.stamp, cut.debug_of)


def _segments(cuts: tuple[tuple[int, int], ...], segment_bytes: int) -> list[tuple[tuple[int, int], ...]]:
    """Consecutive runs of chunks of about *segment_bytes* each."""
    segments: list[list[tuple[int, int]]] = [[]]
    size = 0
    for cut in cuts:
        if size >= segment_bytes:
            segments.append([])
            size = 0
        segments[-1].append(cut)
        size += cut[1]
    return [tuple(s) for s in segments]


def _batches(order: list[TreeItem]) -> Iterator[list[TreeItem]]:
    batch: list[TreeItem] = []
    size = 0
    for item in order:
        batch.append(item)
        size += item.size
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------- compress


class InOrderCompression:
    """Compress *runs* (the archive's objects in order) on the workers; iterating yields each task's
    spooled records, (spool file name, offset, length), in archive order.

    Tasks are submitted from the start, so the workers compress while the caller is still signing
    the manifest; up to `COMPRESS_LOOKAHEAD` tasks per worker may run ahead of the one awaited.
    """

    def __init__(
        self,
        workers: Workers,
        plan: Iterable[ObjectRun | SpooledRange],
        progress: Progress | None = None,
        total: int = 0,
    ) -> None:
        self._workers = workers
        self._tasks = _compress_tasks(plan)  # computed as they are submitted
        self._progress = progress
        self._total = total  # for progress: bytes to compress, or an upper bound
        self._limit = workers.limit * COMPRESS_LOOKAHEAD
        self._inflight: dict[Future[TaskResult], int] = {}
        self._sizes: list[int] = []  # input bytes of each task, by index
        self._submitted = 0
        self._submit()

    def _submit(self) -> None:
        while len(self._inflight) < self._limit:
            task = next(self._tasks, None)
            if task is None:
                return
            self._inflight[self._workers.submit("compress_runs", task)] = self._submitted
            self._sizes.append(sum(_input_bytes(step) for step in task))
            self._submitted += 1

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        finished: dict[int, tuple[str, int, int]] = {}
        next_out = compressed = 0
        while self._inflight:
            done, _ = wait(self._inflight, return_when=FIRST_COMPLETED)
            for future in done:
                finished[self._inflight.pop(future)] = future.result().spooled
            self._submit()
            while next_out in finished:
                yield finished.pop(next_out)
                compressed += self._sizes[next_out]
                next_out += 1
                if self._progress:
                    self._progress("compress", min(compressed, self._total), self._total)
        if self._progress:
            self._progress("compress", self._total, self._total)


def _input_bytes(step: ObjectRun | SpooledRange) -> int:
    return sum(obj[2] for obj in step.objects) if isinstance(step, ObjectRun) else step[2]


def _compress_tasks(plan: Iterable[ObjectRun | SpooledRange]) -> Iterator[list[ObjectRun | SpooledRange]]:
    """The plan cut into tasks of about COMPRESS_TASK_BYTES of input; a longer run is split."""
    task: list[ObjectRun | SpooledRange] = []
    size = 0
    for step in plan:
        if not isinstance(step, ObjectRun):
            task.append(step)  # compressed by the survey: the worker only copies it into its output
            size += step[2]
            if size >= COMPRESS_TASK_BYTES:
                yield task
                task, size = [], 0
            continue
        objects: list[tuple[str, int, int]] = []
        for obj in step.objects:
            objects.append(obj)
            size += obj[2]
            if size >= COMPRESS_TASK_BYTES:
                task.append(ObjectRun(step.source, step.stamp, tuple(objects)))
                yield task
                task, objects, size = [], [], 0
        if objects:
            task.append(ObjectRun(step.source, step.stamp, tuple(objects)))
    if task:
        yield task
