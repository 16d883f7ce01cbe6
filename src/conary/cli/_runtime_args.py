"""Options shared by the runtime command modules (install, system, query)."""

from __future__ import annotations

import argparse

from conary.cli import output


def add_root(parser: argparse.ArgumentParser) -> None:
    """Accept --root after the subcommand too; the top-level default stays when it is absent."""
    parser.add_argument(
        "--root", default=argparse.SUPPRESS, metavar="DIR", help="root to act on (default: /)"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="check and print what would change, change nothing"
    )


def add_mutating(parser: argparse.ArgumentParser, *, sandbox: bool = True) -> None:
    add_root(parser)
    add_json(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    if sandbox:
        parser.add_argument(
            "--sandbox",
            choices=("auto", "always", "never"),
            default="auto",
            help="run scriptlets and triggers sandboxed: always, never, or auto (when possible; default)",
        )


def report_recovered(lines: list[str] | tuple[str, ...]) -> None:
    for line in lines:
        output.notice(line)


def render_outcome(outcome, as_json: bool) -> int:
    report_recovered(outcome.recovered)
    if as_json:
        output.emit_json(outcome.to_json())
        return 0
    if outcome.dry_run:
        for line in outcome.plan.render():
            print(line)
        print("dry run: nothing changed")
        return 0
    for warning in outcome.warnings:
        output.warn(warning)
    if outcome.state is None:
        print("nothing to do")
        return 0
    counts = ", ".join(f"{v} {k}" for k, v in outcome.plan.counts().items()) or "no file changes"
    for change in outcome.plan.changes:
        print(f"{change.verb:<8} {change.new or change.old}")
    print(f"state {outcome.state}: {outcome.plan.summary} ({counts})")
    if outcome.triggers:
        print(f"triggers: {', '.join(outcome.triggers)}")
    return 0
