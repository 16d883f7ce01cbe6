"""`conary new NAME`: write a commented scaffold recipe that passes `conary recipe check`."""

from __future__ import annotations

import argparse

from conary.cli import output
from conary.recipe.scaffold import write_scaffold


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "new",
        help="write a scaffold recipe NAME.recipe.toml",
        description="Write a commented scaffold recipe NAME.recipe.toml. An existing file is kept "
        "unless --force is given.",
    )
    p.add_argument("name", metavar="NAME", help="package name")
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="directory to write into (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite an existing recipe")
    p.set_defaults(func=_new)


def _new(args: argparse.Namespace) -> int:
    target = write_scaffold(args.name, args.output, force=args.force)
    print(target)
    output.notice(f"replace the placeholder checksum, then run: conary recipe check {target}")
    return 0
