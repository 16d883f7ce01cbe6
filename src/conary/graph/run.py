"""Run a graph build on doit: tasks generated in code, `uptodate` answered by the checkpoint store.

doit decides order and parallelism, nothing more. Its own dependency database is kept in memory
and thrown away: it is written only when a run ends, so a killed run would lose it, and the store
already says what is done. Packages whose key has a checkpoint before the run starts get no task at
all (a no-op run schedules nothing); the rest become tasks whose `uptodate` asks the store once
their dependencies are done, which is where early cutoff turns a rebuild's dependents into
`cached`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskFailed
from doit.task import Task

from conary.errors import ConaryError
from conary.fsutil import fsync_dir
from conary.graph import snapshot
from conary.graph.executor import CookJob, Executor, LocalExecutor
from conary.graph.keys import KeyContext, output_digest
from conary.graph.loader import current_signatures
from conary.graph.plan import (
    BLOCKED,
    BUILT,
    CACHED,
    CUTOFF,
    FAILED,
    PENDING,
    BuildEvent,
    BuildReport,
    BuildRequest,
    PackageResult,
)
from conary.graph.roots import clean_partial_roots
from conary.graph.session import Session, clean_partial_files, package_files, place, publish
from conary.graph.store import Checkpoint, CheckpointStore, kept_package, packages_dir
from conary.graph.unverified import prefetch

# The session of the process a cook runs in. doit's process pool forks its workers from the
# scheduler, and an SQLite connection must not cross a fork: each process opens its own.
_WORKER: dict[int, Session] = {}


def build(request: BuildRequest, *, dry_run: bool = False) -> BuildReport:
    """Build every recipe of the request whose key has no checkpoint, in dependency order."""
    store = CheckpointStore(Path(request.state))
    try:
        if dry_run:
            return _Run(Session(request, store), dry_run).run()
        with _state_lock(Path(request.state)):
            # Unverified bytes change keys, so their checksums must be known before any key is.
            unverified = prefetch(request) if request.skip_verify else ()
            packages = [os.fspath(p) for p in package_files((*request.seed, *request.base), "seed package")]
            recipes = current_signatures(request.recipes, KeyContext(target=request.target), store)
            print_ = snapshot.fingerprint(request, packages, recipes, unverified)
            fast = _unchanged(request, store, print_)
            if fast is not None:
                return fast
            session = Session(request, store)
            report = _Run(session, dry_run).run()
            if report.ok:
                snapshot.save(store, request, print_, [(r.name, r.key) for r in report.results])
            return report
    finally:
        store.close()


def _unchanged(request: BuildRequest, store: CheckpointStore, print_: str) -> BuildReport | None:
    """The report of a no-op run, from the last complete run's snapshot; None when anything
    changed since (then the full path decides, package by package)."""
    checkpoints = snapshot.cached_checkpoints(store, request, print_)
    if checkpoints is None:
        return None
    packages = os.fspath(packages_dir(Path(request.state)))
    output = os.fspath(request.output)
    for cp in checkpoints:
        if not publish(packages, output, cp):
            return None
    results = tuple(
        PackageResult(cp.name, cp.version, CACHED, cp.key, cp.output_digest, cp.seconds, cp.log)
        for cp in checkpoints
    )
    if request.progress is not None:
        for done, result in enumerate(results, 1):
            request.progress(BuildEvent("finished", result.name, CACHED, result.log, done, len(results)))
    return BuildReport(results)


@contextlib.contextmanager
def _state_lock(state: Path, wait: float = 10.0) -> Iterator[None]:
    """One build at a time per state directory. The lock goes with the process, even killed; the
    wait covers a killed build's last sandbox processes, which hold it until they are gone."""
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConaryError(
                        "another build is using this state directory",
                        where=str(state),
                        hint="wait for it to finish, or give another --state",
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


class _Run:
    def __init__(self, session: Session, dry_run: bool) -> None:
        self.session = session
        self.request = session.request
        self.dry_run = dry_run
        self.graph = session.graph
        self.previous = session.store.latest_digests()  # each name's output digest before this run
        self.durations = session.store.durations()
        self.results: dict[str, PackageResult] = {}
        self.done = 0

    # ----------------------------------------------------------------- events

    def emit(self, kind: str, name: str, action: str = "", text: str = "") -> None:
        if self.request.progress is None:
            return
        now = time.time()
        running = tuple(
            (r.name, r.step, now - r.started)
            for r in sorted(self.session.store.running(), key=lambda r: r.name)
        )
        self.request.progress(
            BuildEvent(
                kind, name, action, text, self.done, len(self.graph.nodes), running, self._eta(running)
            )
        )

    def _eta(self, running: tuple[tuple[str, str, float], ...]) -> float | None:
        """The last durations of the packages still to do, shared among the jobs; what the running
        ones already spent counts as done. None while a package has no duration on record."""
        left = 0.0
        spent = {name: seconds for name, _, seconds in running}
        for name in self.graph.nodes:
            if name in self.results:
                continue
            if name not in self.durations:
                return None
            left += max(0.0, self.durations[name] - spent.get(name, 0.0))
        return left / max(1, min(self.request.jobs, len(self.graph.nodes) - len(self.results) or 1))

    def finish(self, result: PackageResult) -> None:
        self.results[result.name] = result
        self.done += 1
        self.emit("finished", result.name, result.action, result.log)

    # ----------------------------------------------------------------- the run

    def run(self) -> BuildReport:
        store = self.session.store
        if not self.dry_run:
            store.clear_running()
            store.set_request(
                {
                    "recipes": [str(Path(p).resolve()) for p in self.request.recipes],
                    "seed": [str(Path(p).resolve()) for p in self.request.seed],
                    "base": [str(Path(p).resolve()) for p in self.request.base],
                    "host_seed": self.request.host_seed,
                    "stage": self.request.stage,
                    "toolchain": self.request.toolchain,
                }
            )
            clean_partial_roots(self.session.state / "roots")
            Path(self.request.output).mkdir(parents=True, exist_ok=True)
            clean_partial_files(Path(self.request.output))
            clean_partial_files(packages_dir(self.session.state))
        dirty: list[str] = []
        self.session.preload()
        for name in self.graph.order:
            cp = self.session.checkpoint(name)
            present = cp is not None and (
                self.session.is_present(cp) if self.dry_run else self.session.publish(cp)
            )
            if cp is not None and present:
                self.finish(self._cached(name, cp))
            else:
                dirty.append(name)
        if dirty and self.dry_run:
            for name in dirty:
                key = self.session.key(name)
                self.finish(self._result(name, PENDING, key.digest if key else ""))
        elif dirty:
            self._run_doit(dirty)
        return BuildReport(tuple(self.results[name] for name in self.graph.order))

    def _cached(self, name: str, cp: Checkpoint) -> PackageResult:
        return PackageResult(name, cp.version, CACHED, cp.key, cp.output_digest, cp.seconds, cp.log)

    def _result(self, name: str, action: str, key: str = "", **kw: Any) -> PackageResult:
        node = self.graph.nodes[name]
        return PackageResult(
            name,
            node.version,
            action,
            key,
            kw.get("digest", ""),
            kw.get("seconds", 0.0),
            kw.get("log", ""),
            kw.get("tail", ()),
        )

    def _run_doit(self, dirty: list[str]) -> None:
        dirty_set = set(dirty)
        tasks = [self._task(name, dirty_set) for name in dirty]
        loader = _Loader(tasks, self.request, self)
        # No config files: a pyproject.toml or doit.cfg in the caller's directory is not ours.
        DoitMain(loader, config_filenames=()).run(["run"])
        for name in dirty:  # in graph order: a dependency is settled before its dependents
            self.settle(name, final=True)

    def settle(self, name: str, final: bool = False) -> None:
        """NAME's result once doit is done with it (or with the run), read from the store: the
        cook ran in whichever process doit chose, and the store is what it left."""
        if name in self.results:
            return
        self.session.forget(name)
        cp = self.session.checkpoint(name)
        if cp is not None:
            before = self.previous.get(name)
            action = CUTOFF if before == cp.output_digest else BUILT
            self.finish(
                self._result(name, action, cp.key, digest=cp.output_digest, seconds=cp.seconds, log=cp.log)
            )
            return
        key = self.session.key(name)
        failure = self.session.store.failure(name)
        if key is not None and failure is not None and failure[0] == key.digest:
            log = failure[1]
            self.finish(self._result(name, FAILED, key.digest, log=log, tail=tuple(_tail(Path(log)))))
        elif any(
            name_dep in self.results and self.results[name_dep].action in (FAILED, BLOCKED)
            for name_dep in self.graph.nodes[name].deps
        ):
            self.finish(self._result(name, BLOCKED))
        elif final:  # not tried: the run stopped at a failure (no --keep-going)
            self.finish(self._result(name, PENDING, key.digest if key else ""))

    def _task(self, name: str, dirty: set[str]) -> Task:
        node = self.graph.nodes[name]
        return Task(
            name,
            actions=[(_cook_action, [name], {})],
            task_dep=[dep for dep in node.deps if dep in dirty],
            uptodate=[(self._uptodate, [name], {})],
            verbosity=0,
        )

    def _uptodate(self, name: str, task: Any = None, values: Any = None) -> bool:
        """Asked by doit once NAME's dependencies are done: has its key a checkpoint now?"""
        key = self.session.key(name)
        if key is None:
            return False
        cp = self.session.store.get(key.digest)
        if cp is None or not self.session.publish(cp):
            return False
        self.finish(self._cached(name, cp))
        return True


def _cook_action(name: str) -> bool | TaskFailed:
    """A doit action: cook NAME (in whichever process doit runs it) and record its checkpoint."""
    session = _worker_session()
    session.forget(name)
    key = session.key(name)
    assert key is not None, f"doit ran {name} before its dependencies"
    try:
        _cook(session, name, key.digest, key.text)
    except ConaryError as err:
        log = str(getattr(err, "log", "") or "")
        if not log:  # not a step's failure: keep the message where a log would be
            log_file = session.state / "logs" / f"{name}-{key.digest[:16]}.error"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.write_text(err.render() + "\n")
            log = str(log_file)
        session.store.failed(name, key.digest, log)
        return TaskFailed(err.render())
    return True


def _worker_session() -> Session:
    pid = os.getpid()
    if pid not in _WORKER:
        # A doit worker: it dies with the scheduler, so a killed `conary build` leaves no cook
        # behind to race the next run for the same work directory.
        _die_with_parent()
        _WORKER.clear()  # a forked copy of the parent's session holds the parent's connection
        _WORKER[pid] = Session(_CURRENT["request"], CheckpointStore(Path(_CURRENT["request"].state)))
    return _WORKER[pid]


_CURRENT: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _CURRENT.get("scheduler"):  # the scheduler died before prctl took effect
        os._exit(1)


def _on_step(session: Session, name: str) -> Any:
    """The cook's progress notes as steps: recorded (and shown) when the step changes, not at each
    percent of packing, so the store sees a handful of writes per package."""
    last = [""]

    def step(text: str) -> None:
        head = text.split(":", 1)[0].split(" ", 1)[0]
        if head == last[0]:
            return
        last[0] = head
        session.store.step(name, head)
        run = _CURRENT.get("run")
        if run is not None and os.getpid() == _CURRENT.get("scheduler"):
            run.emit("step", name, text=head)

    return step


def _cook(session: Session, name: str, key: str, key_text: str) -> None:
    state = session.state
    request = session.request
    node = session.graph.nodes[name]
    store = session.store
    store.cook_started(name, key)
    started = time.perf_counter()
    tag = f"{name}-{key[:16]}"
    workdir = state / "work" / tag
    outdir = state / "out" / tag
    for stale in (workdir, outdir):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    outdir.mkdir(parents=True)
    root = session.build_root(name)
    executor: Executor = request.executor or LocalExecutor(
        source_cache=request.source_cache,
        mirrors=request.mirrors,
        offline=request.offline,
        signing_key=request.signing_key,
        skip_verify=request.skip_verify,
    )
    job = CookJob(
        name=name,
        key=key,
        recipe=node.path,
        root=root,
        workdir=workdir,
        output_dir=outdir,
        jobs=request.jobs_per_package,
        target=request.target,
    )
    package = executor.cook(job, _on_step(session, name))
    digest = output_digest(package)
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    kept = kept_package(state, key)
    kept.parent.mkdir(parents=True, exist_ok=True)
    place(package, kept)
    place(kept, Path(request.output) / package.name)
    logs = state / "logs" / tag
    shutil.rmtree(logs, ignore_errors=True)
    logs.parent.mkdir(parents=True, exist_ok=True)
    if (workdir / "logs").is_dir():
        os.rename(workdir / "logs", logs)
        fsync_dir(logs.parent)
    store.commit(
        Checkpoint(
            key=key,
            name=name,
            version=node.version,
            release=node.release,
            package=package.name,
            package_sha256=sha,
            output_digest=digest,
            key_text=key_text,
            seconds=time.perf_counter() - started,
            log=str(logs),
            created=time.time(),
        )
    )
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(outdir, ignore_errors=True)


def _tail(path: Path, lines: int = 10) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


class _Reporter:
    """doit's reporter, turned into our events; doit itself prints nothing."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def initialize(self, tasks: Any, selected_tasks: Any) -> None: ...
    def get_status(self, task: Any) -> None: ...

    def execute_task(self, task: Any) -> None:
        self.run.emit("started", task.name)

    def add_failure(self, task: Any, fail: Any) -> None:
        self.run.settle(task.name)

    def add_success(self, task: Any) -> None:
        self.run.settle(task.name)

    def skip_uptodate(self, task: Any) -> None: ...
    def skip_ignore(self, task: Any) -> None: ...
    def cleanup_error(self, exception: Any) -> None: ...
    def runtime_error(self, msg: str) -> None:
        raise ConaryError(f"task scheduler: {msg}")

    def teardown_task(self, task: Any) -> None: ...
    def complete_run(self) -> None: ...


class _Loader(TaskLoader2):
    def __init__(self, tasks: list[Task], request: BuildRequest, run: _Run) -> None:
        super().__init__()
        self.tasks = tasks
        self.request = request
        self.reporter = _Reporter(run)
        _CURRENT["request"] = request
        _CURRENT["run"] = run
        _CURRENT["scheduler"] = os.getpid()
        _WORKER.clear()
        _WORKER[os.getpid()] = run.session

    def setup(self, opt_values: Any) -> None: ...

    def load_doit_config(self) -> dict[str, Any]:
        jobs = max(1, self.request.jobs)
        return {
            "dep_file": ":memory:",
            "backend": "sqlite3",
            "reporter": self.reporter,
            "num_process": jobs if jobs > 1 else 0,
            "par_type": "process",
            "continue": self.request.keep_going,
            "verbosity": 0,
        }

    def load_tasks(self, cmd: Any, pos_args: Any) -> list[Task]:
        return self.tasks
