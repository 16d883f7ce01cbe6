"""`conary import deb`: convert Debian binary packages into signed CCS packages."""

from __future__ import annotations

import argparse
from pathlib import Path

from conary.ccs import ensure_default_key, load_signing_key
from conary.ccs.keys import default_key_path
from conary.cli import output
from conary.debian.batch import import_debs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="convert packages of other formats into CCS packages",
        description="Convert packages of other formats (Debian's .deb) into signed CCS packages.",
    )
    sub = p.add_subparsers(dest="import_command", metavar="FORMAT", parser_class=type(p))
    p.set_defaults(func=lambda _args: _usage(p))

    d = sub.add_parser(
        "deb",
        help="convert Debian binary packages (.deb)",
        description=(
            "Convert each FILE.deb into OUTPUT/NAME-VERSION-RELEASE.ARCH.ccs, without dpkg. Files, "
            "modes, owners and symlinks are those `dpkg-deb -x` extracts; conffiles under /etc are "
            "config; Depends, Pre-Depends and Provides become package requirements and provides, "
            "beside the scanned soname requirements. Maintainer scripts are recorded in the "
            "package's provenance and not run; each package that has them gets one warning. The "
            "same .deb always gives the same bytes. See docs/debian-import.md."
        ),
    )
    d.add_argument("debs", nargs="+", type=Path, metavar="FILE.deb", help="Debian binary packages")
    d.add_argument("--output", "-o", required=True, type=Path, metavar="DIR", help="where the .ccs files go")
    d.add_argument("--key", metavar="KEY", help="signing key (default: the user's default key)")
    d.add_argument("--jobs", "-j", type=int, metavar="N", help="packages converted at once (default: cores)")
    d.set_defaults(func=_import_deb)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _import_deb(args: argparse.Namespace) -> int:
    if args.key:
        key = load_signing_key(args.key)
    else:
        key, created = ensure_default_key()
        if created:
            output.notice(f"created signing key {default_key_path()} (key id {key.key_id})")
    for imported in import_debs(args.debs, args.output, key, jobs=args.jobs, on_done=_report):
        if imported.warning:
            output.warn(imported.warning)
    return 0


def _report(done: int, total: int, name: str) -> None:
    output.notice(f"[{done}/{total}] {name}")
