"""Spread the two packing passes over worker processes and gather their results.

Survey: big files go first, biggest first, then the others in path order, so the last tasks to
finish are small ones. Small files travel in batches, one task each, to keep the per-task cost of a
process pool low. A file of `split_bytes` or more comes back from its worker cut but not hashed;
its segments and its whole-file hash then jump the queue, so one giant file still keeps every
worker busy.

Compress: the objects not compressed by the survey go out in archive order, in runs of about
COMPRESS_TASK_BYTES; finished runs are handed back in that same order, between the ranges of
records the survey compressed, as soon as every earlier one is done.

A tree too small to repay starting processes, a call with one worker, or a caller running other
threads gets its package packed in this process, by the same code.
"""

from __future__ import annotations

import multiprocessing
import sys
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
    PlanStep,
    SpooledRange,
    SpooledRun,
    TaskResult,
    check_unchanged,
    init_worker,
    packed_file,
    run_task,
)

BATCH_BYTES, BATCH_FILES = 4 * MiB, 256  # smaller files are surveyed in batches of this size
BIG_FILE_BYTES = 1 * MiB  # files this big are surveyed first
TAIL_BYTES = 16 * MiB  # the survey's last bytes go in smaller batches
SWITCH_INTERVAL = 0.0005  # seconds; the GIL switch interval while worker processes pack
COMPRESS_TASK_BYTES = 8 * MiB  # uncompressed bytes of objects per compress task
COMPRESS_LOOKAHEAD = 4  # compress tasks may run this many times the survey's tasks in flight ahead
PARALLEL_MIN_BYTES = 16 * MiB  # below this, starting worker processes costs more than it saves


class Workers(Protocol):
    limit: int  # tasks worth keeping in flight

    def submit(self, method: str, *args: object) -> Future[TaskResult]: ...

    def finish(self) -> None:
        """No more tasks: start letting the workers go (the caller still has its last writes to
        flush to disk, which this overlaps)."""


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

    def finish(self) -> None:
        self._packer.close()

    def close(self) -> None:
        self._packer.close()


class _Processes:
    def __init__(self, pool: ProcessPoolExecutor, workers: int) -> None:
        self._pool = pool
        self.limit = 2 * workers
        self._stopping: threading.Thread | None = None

    def submit(self, method: str, *args: object) -> Future[TaskResult]:
        return self._pool.submit(run_task, method, *args)

    def finish(self) -> None:
        self._stopping = threading.Thread(target=self._pool.shutdown, name="packing-workers-exit")
        self._stopping.start()

    def close(self) -> None:
        """Wait for the workers to exit."""
        if self._stopping is not None:
            self._stopping.join()
        self._pool.shutdown(wait=True)


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
    # The pool's threads hand tasks and results between the builder and the workers, while the
    # builder's own thread computes the manifest; at the default interval every hand-off waits up
    # to 5 ms for the GIL, and the workers idle meanwhile. No other thread runs here (see above).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    processes = _Processes(pool, workers)
    try:
        yield processes
    except BrokenProcessPool as exc:
        pool.shutdown(wait=True, cancel_futures=True)
        raise CcsError(
            "a packing worker process died", hint="the system may be out of memory; see the kernel log"
        ) from exc
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        sys.setswitchinterval(interval)
    processes.close()


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
    order = _survey_order(items)
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
    lengths = tuple(n for _, n in cut.cuts)
    item, facts, stamp = cut.item, cut.facts, cut.stamp
    return packed_file(item, job.sha256, chunks, lengths, facts, stamp, config.rules, cut.debug_of)


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


def _survey_order(items: list[TreeItem]) -> list[TreeItem]:
    """Big files first, biggest first, so that the last tasks to finish are small ones; then the
    others in path order: the records a batch of them leaves in a spool then lie in archive order,
    and reach the package in long ranges."""
    big = sorted((i for i in items if i.size >= BIG_FILE_BYTES), key=lambda i: (-i.size, i.path))
    return big + sorted((i for i in items if i.size < BIG_FILE_BYTES), key=lambda i: i.path.encode())


def _batches(order: list[TreeItem]) -> Iterator[list[TreeItem]]:
    """Batches of BATCH_BYTES or BATCH_FILES, an eighth of that for the last TAIL_BYTES: the
    workers then finish their last batches at nearly the same time."""
    batch: list[TreeItem] = []
    size = 0
    left = sum(item.size for item in order)
    for item in order:
        batch.append(item)
        size += item.size
        left -= item.size
        small = left < TAIL_BYTES
        if size >= (BATCH_BYTES // 8 if small else BATCH_BYTES) or len(batch) >= (
            BATCH_FILES // 8 if small else BATCH_FILES
        ):
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------- compress


class InOrderCompression:
    """Compress the objects of *plan* on the workers; iterating yields (spool file name, offset,
    length) of the archive's records, in archive order: each compress task's output, and the
    ranges of records the survey compressed already.

    Tasks are submitted from the start, so the workers compress while the caller is still signing
    the manifest; up to `COMPRESS_LOOKAHEAD` tasks per worker may run ahead of the one awaited.
    """

    def __init__(
        self,
        workers: Workers,
        plan: Iterable[PlanStep],
        progress: Progress | None = None,
        total: int = 0,
    ) -> None:
        self._workers = workers
        self._steps = _compress_tasks(plan)  # computed as they are submitted
        self._progress = progress
        self._total = total  # for progress: bytes to compress, or an upper bound
        self._limit = workers.limit * COMPRESS_LOOKAHEAD
        self._inflight: dict[Future[TaskResult], int] = {}
        self._ready: dict[int, SpooledRange] = {}  # by index in the archive
        self._sizes: list[int] = []  # input bytes of each step, by index
        self._submit()

    def _submit(self) -> None:
        while len(self._inflight) < self._limit:
            step = next(self._steps, None)
            if step is None:
                return
            index = len(self._sizes)
            if isinstance(step, SpooledRun):
                self._ready[index] = (step.spool, step.offset, step.length)
                self._sizes.append(step.input)
            else:
                self._inflight[self._workers.submit("compress_runs", step)] = index
                self._sizes.append(sum(obj[2] for run in step for obj in run.objects))

    def __iter__(self) -> Iterator[SpooledRange]:
        next_out = compressed = 0
        while True:
            while next_out in self._ready:
                yield self._ready.pop(next_out)
                compressed += self._sizes[next_out]
                next_out += 1
                if self._progress:
                    self._progress("compress", min(compressed, self._total), self._total)
            if not self._inflight:
                self._submit()
                if self._inflight or next_out in self._ready:
                    continue
                break
            done, _ = wait(self._inflight, return_when=FIRST_COMPLETED)
            for future in done:
                self._ready[self._inflight.pop(future)] = future.result().spooled
            self._submit()
        if self._progress:
            self._progress("compress", self._total, self._total)


def _compress_tasks(plan: Iterable[PlanStep]) -> Iterator[list[ObjectRun] | SpooledRun]:
    """The plan cut into compress tasks of about COMPRESS_TASK_BYTES of input (a longer run is
    split); records compressed already pass through as they are, between the tasks."""
    task: list[ObjectRun] = []
    size = 0
    for step in plan:
        if isinstance(step, SpooledRun):
            if task:
                yield task
                task, size = [], 0
            yield step
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
