"""`conary cook RECIPE...`: build recipes into signed .ccs packages in a hermetic sandbox."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rich.live import Live
from rich.text import Text

from conary.cli import output
from conary.cook import CookOptions, CookResult, FetchedSource, cook_recipe, fetch_only
from conary.errors import ConaryError, InputError

DESCRIPTION = """\
Cook each RECIPE into a signed .ccs package: fetch its sources (the only step that uses the
network), verify their checksums, unpack, apply patches, run the build steps (setup, configure,
make, check, install, post_install, then build.sanity_check) in a hermetic sandbox, and package
DESTDIR with the recipe's components and the dependency scan.

Inside the sandbox the source tree is /build and the install root is /destdir; the root is a
read-only tmpfs with the host /usr (or --sysroot) bound read-only, a private /tmp, its own /proc,
hostname and loopback-only network, and an environment that holds only the step variables
(DESTDIR, MAKEFLAGS, SOURCE_DATE_EPOCH, LC_ALL=C, TZ=UTC, PATH, CFLAGS with -ffile-prefix-map,
and the recipe's build.environment). Each step's output goes to <workdir>/logs/<step>.log.

Cooking the same recipe twice gives byte-identical packages. See docs/cook.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "cook",
        help="build recipes into signed .ccs packages",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipes", nargs="+", metavar="RECIPE", type=Path, help="recipe file(s) to cook, in order")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("dist"),
        metavar="DIR",
        help="directory the .ccs packages are written to (default: ./dist)",
    )
    p.add_argument(
        "--source-cache",
        type=Path,
        metavar="DIR",
        help="source cache, one file per checksum (default: $CONARY_SOURCE_CACHE, else "
        "$XDG_CACHE_HOME/conary/sources, else ~/.cache/conary/sources)",
    )
    p.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL|DIR",
        help="a mirror to try before a source's own URL (repeatable; tried in order, before the "
        "mirrors of the mirror config file)",
    )
    p.add_argument(
        "--mirror-config",
        type=Path,
        metavar="FILE",
        help="mirror config file (default: $XDG_CONFIG_HOME/conary/mirrors.toml)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="fetch only from the cache, local files and directory mirrors",
    )
    p.add_argument(
        "--fetch-only",
        action="store_true",
        help="fill the source cache with every source of every RECIPE and build nothing",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--hermetic",
        dest="hermetic",
        action="store_true",
        default=True,
        help="run the build steps in the hermetic sandbox (the default)",
    )
    mode.add_argument(
        "--no-hermetic",
        dest="hermetic",
        action="store_false",
        help="run the build steps directly on the host, for debugging a recipe: the steps get the same "
        "variables but see the real work-directory paths and the host's files and network; the package "
        "records sandbox=host",
    )
    p.add_argument(
        "--sysroot",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="use this root read-only as the sandbox's toolchain instead of the host /usr; repeat to "
        "stack roots (the first given is on top) into one read-only union",
    )
    p.add_argument(
        "--host-seed",
        action="store_true",
        help="with --sysroot: put the host toolchain (/usr and the few /etc entries it reads) at the "
        "bottom of the union, under the sysroots",
    )
    p.add_argument(
        "--unsafe-host-root",
        action="store_true",
        help="debugging only: as root, run the steps as host uid 0 instead of the unprivileged id "
        "1600000000 (still in the sandbox, with its capability set, no_new_privs and seccomp); "
        "warned about and recorded in the package's provenance (unsafe_host_root)",
    )
    p.add_argument(
        "--skip-verify",
        action="store_true",
        help="escape hatch for a re-rolled tarball: when no place has a source's pinned bytes but "
        "one has other bytes, use the first such bytes (cached under their own checksum); each such "
        "source is warned about and recorded in the package's provenance (unverified_sources)",
    )
    p.add_argument(
        "--step-timeout",
        type=float,
        metavar="SECONDS",
        help="kill a build step (and everything it started) after SECONDS and fail the cook; overrides "
        "the recipe's build.timeout (default: the recipe's, else 21600 = 6 hours)",
    )
    p.add_argument(
        "--memory",
        type=_size,
        metavar="SIZE",
        help="address space each process of a step may use (RLIMIT_AS), e.g. 4G or 512M (default 16G)",
    )
    p.add_argument(
        "--pids",
        type=int,
        metavar="N",
        help="processes and threads a step may have at once (RLIMIT_NPROC in its own user namespace; "
        "default 4096)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="parallel jobs (MAKEFLAGS=-jN and %%(jobs)s); overrides the recipe's build.jobs "
        "(default: the recipe's, else the number of CPUs)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="work directory (build/, destdir/, logs/); must be empty or new; its logs are kept "
        "(default: a new directory under ~/.cache/conary/work)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory after a successful cook (it is always kept when a build step fails)",
    )
    p.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="secret key to sign with (default: the user's default key, "
        "~/.config/conary/keys/default, created on first use)",
    )
    p.add_argument(
        "--source-date-epoch",
        type=int,
        metavar="SECONDS",
        help="timestamp for the build and the package (default: $SOURCE_DATE_EPOCH, else the newest "
        "mtime in the main source archive)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(text: str) -> int:
    """A byte count with an optional binary suffix: 512M, 4G, 1048576."""
    number, unit = text.strip().upper().removesuffix("B").removesuffix("I"), ""
    if number and number[-1] in _UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * _UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 512M or 4G)") from None
    if value < 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r} is below 1M, too little for any build step")
    return value


def run(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs must be 1 or more, got {args.jobs}", where="conary cook")
    if args.step_timeout is not None and args.step_timeout <= 0:
        raise InputError(f"--step-timeout must be positive, got {args.step_timeout:g}", where="conary cook")
    if args.pids is not None and args.pids < 1:
        raise InputError(f"--pids must be 1 or more, got {args.pids}", where="conary cook")
    if args.workdir is not None and len(args.recipes) > 1:
        raise InputError("--workdir takes one recipe at a time", where="conary cook")
    for recipe in args.recipes:
        if not recipe.is_file():
            raise InputError("recipe file not found", where=str(recipe))
    if args.unsafe_host_root and os.geteuid() == 0 and args.hermetic:
        output.warn("--unsafe-host-root: build steps will run as host root; the packages will record it")
    if args.skip_verify:
        output.warn(
            "--skip-verify: a source whose bytes differ from the recipe's checksum is used anyway; "
            "the packages will record it"
        )
    verbose = bool(getattr(args, "verbose", False))
    with _progress(enabled=not verbose and not args.json) as progress:
        options = CookOptions(
            output_dir=args.output,
            source_cache=args.source_cache,
            mirrors=tuple(args.mirror),
            mirror_config=args.mirror_config,
            offline=args.offline,
            hermetic=args.hermetic,
            sysroots=tuple(args.sysroot),
            host_seed=args.host_seed,
            step_timeout=args.step_timeout,
            unsafe_host_root=args.unsafe_host_root,
            skip_verify=args.skip_verify,
            warn=output.warn,
            memory=args.memory,
            pids=args.pids,
            jobs=args.jobs,
            workdir=args.workdir,
            keep=args.keep,
            key=args.key,
            live_output=verbose,
            source_date_epoch=args.source_date_epoch,
            progress=progress,
        )
        if args.fetch_only:
            fetched = fetch_only(list(args.recipes), options)
            return _report_fetch(fetched, args.json)
        results = []
        for recipe in args.recipes:
            try:
                results.append(cook_recipe(recipe, options))
                if progress is not None:
                    progress(f"{results[-1].name}: done")
            except ConaryError as err:
                _explain_failure(err)
                raise
    for result in results:
        if result.key_created is not None:
            output.notice(f"created signing key {result.key_created} (and {result.key_created}.pub)")
        for warning in result.warnings:
            output.warn(f"{result.name}: {warning}")
        if result.workdir is not None:
            output.notice(f"work directory kept at {result.workdir}")
    if args.json:
        output.emit_json([_result_json(r) for r in results])
    else:
        for result in results:
            print(result.package_path)
    return 0


def _explain_failure(err: ConaryError) -> None:
    """Above the one error line: the failed step's last log lines and where the work dir was kept."""
    log_tail = getattr(err, "log_tail", None)
    if log_tail:
        print(f"--- last {len(log_tail)} lines of {err.log} ---", file=sys.stderr)  # type: ignore[attr-defined]
        for line in log_tail:
            print(line, file=sys.stderr)
        print("---", file=sys.stderr)
    workdir = getattr(err, "cook_workdir", None)
    if workdir is not None:
        output.notice(f"work directory kept at {workdir}")


def _report_fetch(fetched: list[FetchedSource], as_json: bool) -> int:
    if as_json:
        output.emit_json(
            [
                {
                    "key": f.key,
                    "url": f.url,
                    "checksum": f.checksum,
                    "actual": f.actual,
                    "verified": f.substitute is None,
                    "path": str(f.path),
                }
                for f in fetched
            ]
        )
    else:
        for item in fetched:
            unverified = "" if item.substitute is None else f"  (UNVERIFIED: the bytes are {item.actual})"
            print(f"{item.checksum}  {item.url}{unverified}")
    return 0


def _result_json(result: CookResult) -> dict[str, Any]:
    return {
        "package": str(result.package_path),
        "name": result.name,
        "version": result.version,
        "release": result.release,
        "sandbox": result.sandbox,
        "source_date_epoch": result.source_date_epoch,
        "provenance": dict(result.provenance),
        "timings": dict(result.timings),
        "workdir": str(result.workdir) if result.workdir else None,
        "warnings": list(result.warnings),
    }


@contextlib.contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """Which recipe stage is running, on stderr.

    On a terminal: a one-line status, redrawn only when the stage changes, with no refresh thread
    (packaging forks worker processes only while no other thread runs). Without one (CI logs): one
    line as each step starts, with the time since the cook started, so a long build is never silent
    and the log shows how long each step took."""
    if not enabled:
        yield None
        return
    if not output.stderr.is_terminal:
        yield _step_lines(sys.stderr)
        return

    with Live(Text("cook: starting"), console=output.stderr, auto_refresh=False, transient=True) as line:

        def update(text: str) -> None:
            line.update(Text(f"cook: {text}"), refresh=True)

        yield update


_PERCENT = re.compile(r"\s+\d+%$")


def _step_lines(stream: TextIO) -> Callable[[str], None]:
    """A progress callback that writes one line per step: ``cook:   12.3s hello: make``. Percentages
    within a step (packaging reports them) are dropped, so each phase gives one line."""
    started = time.monotonic()
    last = ""

    def update(text: str) -> None:
        nonlocal last
        step = _PERCENT.sub("", text)
        if step == last:
            return
        last = step
        stream.write(f"cook: {time.monotonic() - started:7.1f}s {step}\n")
        stream.flush()

    return update
