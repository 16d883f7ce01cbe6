"""Converting many .deb files at once: one package per worker process.

A seed is some two hundred mostly small packages. Packing each one with a pool of its own would pay
a pool's start-up per package and leave cores idle on the small ones, so here each worker converts
whole packages on one core, biggest first, and the pool stays up for the whole batch.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from conary.ccs.keys import SigningKey, as_signing_key
from conary.debian.convert import ImportedPackage, import_deb

Progress = Callable[[int, int, str], None]


def import_debs(
    debs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    signing_key: SigningKey | str | os.PathLike[str],
    *,
    jobs: int | None = None,
    on_done: Progress | None = None,
    omit: Sequence[str] = (),
) -> list[ImportedPackage]:
    """Convert every .deb in *debs* into *output_dir*; results in the order of *debs*.

    omit: package names whose requirements are left out (see import_deb).
    on_done(done, total, name) is called in this process as each package is written. The first
    failure stops the batch and is raised (packages already written stay: each is complete).
    """
    key = as_signing_key(signing_key)
    paths = [Path(d) for d in debs]
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(paths)))
    results: dict[int, ImportedPackage] = {}
    if jobs == 1:
        for index, path in enumerate(paths):
            results[index] = import_deb(path, output, key, workers=1, omit=omit)
            if on_done:
                on_done(len(results), len(paths), results[index].name)
        return [results[i] for i in range(len(paths))]
    order = sorted(range(len(paths)), key=lambda i: -_size(paths[i]))
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: dict[Future[ImportedPackage], int] = {
            pool.submit(import_deb, paths[i], output, key, workers=1, omit=omit): i for i in order
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    results[index] = future.result()
                    if on_done:
                        on_done(len(results), len(paths), results[index].name)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(paths))]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
