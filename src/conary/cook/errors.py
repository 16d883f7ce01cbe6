"""Errors of the cook pipeline; all are ConaryError, so the CLI renders them as one line."""

from __future__ import annotations

from pathlib import Path

from conary.errors import ConaryError


class CookError(ConaryError):
    """A cook failed for a reason that is not the recipe's input (packaging, the work directory)."""


class StepError(CookError):
    """A build step exited nonzero. Carries the tail of its log for the CLI to show above the error."""

    def __init__(
        self,
        step: str,
        exit_code: int,
        log: Path,
        log_tail: list[str],
        *,
        where: str,
        timed_out: float | None = None,
    ) -> None:
        failure = f"timed out after {timed_out:g} seconds and was killed" if timed_out else None
        super().__init__(
            f"step '{step}' {failure or f'failed with exit code {exit_code}'} (log: {log})",
            where=where,
            hint="the last lines of the log are shown above; rerun with --verbose for live output",
        )
        self.step = step
        self.step_exit_code = exit_code
        self.timed_out = timed_out
        self.log = log
        self.log_tail = log_tail
