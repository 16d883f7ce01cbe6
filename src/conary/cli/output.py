"""Rendering helpers shared by command modules: JSON, tables and progress go through here."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any


def __getattr__(name: str) -> Any:
    """`output.stdout` and `output.stderr`: rich consoles made on first use, since importing rich
    costs every start-up ~30 ms and most commands print plain lines."""
    if name not in ("stdout", "stderr"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # on use: importing rich costs every start-up ~30 ms
    from rich.console import Console

    console = Console(stderr=name == "stderr", highlight=False, soft_wrap=True)
    globals()[name] = console
    return console


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def warn(message: str) -> None:
    print(f"conary: warning: {message}", file=sys.stderr)


def notice(message: str) -> None:
    print(f"conary: {message}", file=sys.stderr)


@contextlib.contextmanager
def byte_progress(labels: dict[str, str]) -> Iterator[Callable[[str, int, int], None] | None]:
    """A transient progress bar on stderr, one line per phase, fed by (phase, done, total) calls;
    None when stderr is not a terminal. It refreshes only when called (at most ten times a second):
    no refresh thread, so the caller may still fork worker processes safely."""
    if not sys.stderr.isatty():
        yield None
        return
    # on use: rich.progress adds ~40 ms to every start-up, and only a terminal draws the bar
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description:<12}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=__getattr__("stderr"), transient=True, auto_refresh=False) as bar:
        tasks: dict[str, Any] = {}
        last = 0.0

        def update(phase: str, done: int, total: int) -> None:
            nonlocal last
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)
            now = time.monotonic()
            if now - last >= 0.1 or done >= total:
                last = now
                bar.refresh()

        yield update
