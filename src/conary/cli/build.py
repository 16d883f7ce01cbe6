"""`conary build RECIPE_OR_DIR...`: build a tree of recipes in dependency order, with checkpoints."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.live import Live
from rich.text import Text

from conary.cli import output
from conary.errors import InputError
from conary.graph import (
    BLOCKED,
    FAILED,
    BuildEvent,
    BuildReport,
    BuildRequest,
    CheckpointStore,
    build,
    key_text,
    why,
)

DESCRIPTION = """\
Build every recipe given (files, or directories searched for recipes) in dependency order. Edges
come from build.requires and build.makedepends. Each package is cooked in a build root made of
exactly its build dependencies' packages (and what they need at run time), installed by the runtime,
over the seed: --seed host puts the host's /usr underneath, read-only; --seed PKG_OR_DIR adds .ccs
packages to the base of every root. Without --seed host the host's /usr is never seen.

A package is cooked only when its derivation key (the expanded recipe, source and patch checksums,
target, stage, toolchain and its dependencies' output digests) has no checkpoint in the state
directory. A rebuild whose output equals the previous one stops there: its dependents stay cached.
Each package's checkpoint is committed the moment its .ccs is in --output, so a killed build loses
only the packages that were being cooked.

One line per package: built, cached, cutoff (rebuilt, same output), failed (with its log), blocked
(a dependency failed); then a summary. See docs/graph.md.

  conary build why NAME --state DIR    which key inputs of NAME changed since its last checkpoint
  conary build key NAME --explain      NAME's key text, line by line
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "build",
        help="build a tree of recipes in dependency order, with checkpoints and early cutoff",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipes", nargs="+", metavar="RECIPE_OR_DIR", help="recipe files or directories")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="package repository to write to")
    p.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="checkpoint store, kept packages, build roots and logs (default: OUTPUT/.state)",
    )
    p.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="PKG_OR_DIR|host",
        help="the base of every build root: .ccs files or directories of them, or 'host' for the "
        "host's /usr (read-only, at the bottom); repeatable",
    )
    p.add_argument(
        "-j", "--jobs", type=int, default=1, metavar="N", help="packages built at once (default: 1)"
    )
    p.add_argument(
        "--jobs-per-package", type=int, metavar="N", help="parallel jobs inside each build (MAKEFLAGS -jN)"
    )
    p.add_argument("--keep-going", action="store_true", help="build what does not depend on a failure")
    p.add_argument("--dry-run", action="store_true", help="say what would be cooked and what is cached")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--explain", action="store_true", help="with 'key NAME': print the key's text")
    p.add_argument("--source-cache", type=Path, metavar="DIR", help="source cache (default: the user's)")
    p.add_argument("--mirror", action="append", default=[], metavar="URL|DIR", help="a source mirror")
    p.add_argument("--offline", action="store_true", help="never use the network for sources")
    p.add_argument("--key", type=Path, metavar="FILE", help="signing key (default: the user's)")
    p.add_argument(
        "--trust",
        action="append",
        default=[],
        type=Path,
        metavar="KEY.pub",
        help="a public key the --seed packages are signed with (repeatable; the signing key is trusted)",
    )
    p.add_argument("--stage", default="final", help="the stage name that goes into every key")
    p.set_defaults(func=run)


def request_from(args: argparse.Namespace, recipes: list[str]) -> BuildRequest:
    if args.output is None and args.state is None:
        raise InputError("--output is required", where="conary build", hint="give --output DIR")
    state = args.state or args.output / ".state"
    seeds = [s for s in args.seed if s != "host"]
    return BuildRequest(
        recipes=tuple(Path(r) for r in recipes),
        output=args.output or state / "repo",
        state=state,
        stage=args.stage,
        toolchain="host" if "host" in args.seed else "",
        seed=tuple(Path(s) for s in seeds),
        host_seed="host" in args.seed,
        jobs=args.jobs,
        jobs_per_package=args.jobs_per_package,
        keep_going=args.keep_going,
        source_cache=args.source_cache,
        mirrors=tuple(args.mirror),
        offline=args.offline,
        signing_key=args.key,
        trusted_keys=tuple(args.trust),
    )


def run(args: argparse.Namespace) -> int:
    first = args.recipes[0]
    if first in ("why", "key") and not Path(first).exists():
        return _query(first, args)
    request = request_from(args, args.recipes)
    started = time.monotonic()
    with _progress(args.json) as progress:
        report = build(dataclasses.replace(request, progress=progress), dry_run=args.dry_run)
    if args.json:
        output.emit_json([r.to_json() for r in report.results])
    else:
        _print(report, time.monotonic() - started)
    return 0 if report.ok else 1


def _query(what: str, args: argparse.Namespace) -> int:
    if len(args.recipes) < 2:
        raise InputError(
            f"'build {what}' needs a package name", where="conary build", hint=f"conary build {what} NAME"
        )
    name, recipes = args.recipes[1], args.recipes[2:]
    request = _last_request(args, recipes)
    if what == "key":
        sys.stdout.write(key_text(request, name))
        return 0
    report = why(request, name)
    if args.json:
        output.emit_json(
            {
                "name": name,
                "previous_key": report.previous_key,
                "current_key": report.current_key,
                "changes": list(report.changes),
            }
        )
    elif not report.previous_key:
        print(f"{name}: no checkpoint yet; it will be built")
    elif report.unchanged:
        print(f"{name}: nothing changed since its last checkpoint ({report.current_key[:16]})")
    else:
        print(f"{name}: key {report.previous_key[:16]} -> {report.current_key[:16]}; changed inputs:")
        for line in report.changes:
            print(f"  {line}")
    return 0


def _last_request(args: argparse.Namespace, recipes: list[str]) -> BuildRequest:
    """The request of the last build with this state directory; arguments given here win."""
    state = args.state or (args.output / ".state" if args.output else None)
    if state is None:
        raise InputError("--state is required", where="conary build", hint="give --state DIR")
    with CheckpointStore(state) as store:
        last = store.last_request()
    if not recipes and not last.get("recipes"):
        raise InputError("the store names no recipes", where=str(state), hint="name the recipes after NAME")
    request = request_from(argparse.Namespace(**{**vars(args), "state": state}), recipes or last["recipes"])
    if args.seed or not last:
        return request
    return dataclasses.replace(
        request,
        seed=tuple(Path(p) for p in last.get("seed", ())),
        base=tuple(Path(p) for p in last.get("base", ())),
        host_seed=bool(last.get("host_seed")),
        stage=last.get("stage", request.stage) if args.stage == "final" else args.stage,
        toolchain=last.get("toolchain", ""),
    )


def _print(report: BuildReport, seconds: float) -> None:
    width = max((len(r.name) for r in report.results), default=0)
    for r in report.results:
        line = f"{r.action:<8} {r.name:<{width}} {r.version}"
        if r.action in ("built", "cutoff"):
            line += f"  {r.seconds:.1f}s"
        if r.action == FAILED:
            line += f"  log: {r.log}"
        print(line)
        for tail in r.tail:
            print(f"    | {tail}")
    counts = {a: report.count(a) for a in ("built", "cutoff", "cached", FAILED, BLOCKED, "pending")}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    print(f"{len(report.results)} packages: {summary} in {seconds:.1f}s")


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[BuildEvent], None] | None]:
    """A live view on a terminal (done/total, each running package with its step and time); one
    line per event on stderr otherwise. The live view refreshes only on events: no thread, so
    doit may fork its workers at any time."""
    if quiet:
        yield None
        return
    if not sys.stderr.isatty():

        def line(event: BuildEvent) -> None:
            if event.kind in ("started", "step"):
                what = "start" if event.kind == "started" else event.text
                print(f"conary: [{event.done}/{event.total}] {event.name}: {what}", file=sys.stderr)
            elif event.kind == "finished" and event.action != "cached":
                print(f"conary: [{event.done}/{event.total}] {event.action} {event.name}", file=sys.stderr)

        yield line
        return
    with Live(console=output.stderr, auto_refresh=False, transient=True) as live:

        def update(event: BuildEvent) -> None:
            eta = "" if event.eta is None else f", about {_duration(event.eta)} left"
            lines = [f"{event.done}/{event.total} packages{eta}"]
            lines += [
                f"  {name}  {step or 'starting'}  {seconds:.0f}s" for name, step, seconds in event.running
            ]
            live.update(Text("\n".join(lines)), refresh=True)

        yield update


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
