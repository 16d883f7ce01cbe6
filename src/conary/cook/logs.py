"""Per-step log files, live output under --verbose, and the tail shown when a step fails."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TAIL_LINES = 30


def log_path(log_dir: Path, step: str) -> Path:
    return log_dir / f"{step}.log"


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last *lines* lines of a log, decoded leniently; [] if it does not exist."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - 256 * 1024))
            data = stream.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    return list(deque(text.splitlines(), maxlen=lines))


@contextlib.contextmanager
def step_output(path: Path, *, live: bool, live_stream: BinaryIO | None = None) -> Iterator[int]:
    """Yield a file descriptor for a step's stdout and stderr.

    Output always lands in *path*. With *live*, it is also copied to *live_stream* (stderr by default)
    as it arrives, through a pipe and a copying thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        if not live:
            yield log.fileno()
            return
        out = live_stream or sys.stderr.buffer
        read_fd, write_fd = os.pipe()
        copier = threading.Thread(target=_copy, args=(read_fd, log, out), daemon=True)
        copier.start()
        try:
            yield write_fd
        finally:
            os.close(write_fd)
            copier.join()
            os.close(read_fd)


def _copy(read_fd: int, log: BinaryIO, out: BinaryIO) -> None:
    while block := os.read(read_fd, 65536):
        log.write(block)
        log.flush()
        with contextlib.suppress(OSError, ValueError):
            out.write(block)
            out.flush()
