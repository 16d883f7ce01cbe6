"""`conary seed`: lock, download and import the Debian packages of a bootstrap seed."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from conary.ccs import ensure_default_key, load_signing_key
from conary.cli import output
from conary.debian.lock import read_lock, write_lock
from conary.debian.seed import download_lock, import_seed, lock_path, lock_seed
from conary.fetch import SourceCache, default_cache_dir

_LOCK_NAMES = ("x86_64", "aarch64", "riscv64", "conary-x86_64")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seed",
        help="lock, download and import a bootstrap seed of Debian packages",
        description=(
            "A seed is Stage0 of a bootstrap: Debian binary packages pinned by sha256 in "
            "stages/seed/NAME.lock, converted to CCS and installed into the Stage0 root. "
            "See docs/debian-import.md."
        ),
    )
    sub = p.add_subparsers(dest="seed_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda _args: _usage(p))

    lk = sub.add_parser(
        "lock",
        help="resolve a seed with apt and write its lock",
        description=(
            "Resolve the closure of NAME's package list (plus Debian's Essential set) with apt in a "
            "private state (empty dpkg status, private lists; deb entries derived from this machine's "
            "apt sources and moved to --suite), and write the lock. NAME is a target (x86_64, "
            "aarch64, riscv64: the native toolchain, plus the target's cross compilers) or "
            "conary-x86_64 (Python and Conary's runtime dependencies)."
        ),
    )
    lk.add_argument("names", nargs="+", choices=_LOCK_NAMES, metavar="NAME", help=", ".join(_LOCK_NAMES))
    lk.add_argument("--suite", default="bookworm", choices=("bookworm", "trixie", "sid"), help="Debian suite")
    lk.add_argument("--output", type=Path, metavar="DIR", help="write NAME.lock here (default: stages/seed/)")
    lk.set_defaults(func=_lock)

    fe = sub.add_parser(
        "fetch",
        help="download a lock's .deb files into the source cache",
        description="Download every .deb a lock pins into the source cache by sha256, verified.",
    )
    fe.add_argument("lock", type=Path, metavar="LOCK", help="a lock file (stages/seed/NAME.lock)")
    fe.set_defaults(func=_fetch)

    im = sub.add_parser(
        "import",
        help="download and convert a lock's packages into CCS packages",
        description=(
            "Download LOCK's .deb files (when not cached), convert each to CCS, and build the seed "
            "fixups package (stages/seed/fixups.toml). Install the result into a root with "
            "`conary --root ROOT install OUTPUT/*.ccs`."
        ),
    )
    im.add_argument("lock", type=Path, metavar="LOCK", help="a lock file (stages/seed/NAME.lock)")
    im.add_argument("--output", "-o", required=True, type=Path, metavar="DIR", help="where the .ccs files go")
    im.add_argument("--key", metavar="KEY", help="signing key (default: the user's default key)")
    im.add_argument("--jobs", "-j", type=int, metavar="N", help="packages converted at once (default: cores)")
    im.add_argument("--no-fixups", action="store_true", help="leave out the seed fixups package")
    im.set_defaults(func=_import)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _state_dir() -> Path:
    return default_cache_dir() / ".debian-apt-deb"


def _lock(args: argparse.Namespace) -> int:
    for name in args.names:
        lock = lock_seed(name, state_dir=_state_dir(), suite=args.suite)
        target = args.output / f"{name}.lock" if args.output else lock_path(name)
        write_lock(lock, target)
        output.notice(f"{target}: {len(lock.debs)} packages, {lock.total_size / 1e6:.1f} MB")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    lock = read_lock(args.lock)
    start = time.monotonic()
    download_lock(
        lock, SourceCache(default_cache_dir()), state_dir=_state_dir(), on_done=_progress("download")
    )
    output.notice(
        f"{len(lock.debs)} packages, {lock.total_size / 1e6:.1f} MB, in {time.monotonic() - start:.1f} s"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    key = load_signing_key(args.key) if args.key else ensure_default_key()[0]
    lock = read_lock(args.lock)
    start = time.monotonic()
    paths, warnings = import_seed(
        lock,
        SourceCache(default_cache_dir()),
        args.output,
        key,
        state_dir=_state_dir(),
        jobs=args.jobs,
        fixups=not args.no_fixups,
        on_event=lambda phase, done, total, name: _progress(phase)(done, total, name),
    )
    for warning in warnings:
        output.warn(warning)
    output.notice(f"{len(paths)} packages in {args.output} in {time.monotonic() - start:.1f} s")
    return 0


def _progress(phase: str) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, name: str) -> None:
        if done == total or done % 25 == 0:
            output.notice(f"{phase}: {done}/{total} ({name})")

    return report
