"""`conary query`: depends, rdepends, whatprovides, files, owner."""

from __future__ import annotations

import argparse

from conary.cli import output
from conary.cli._runtime_args import add_json, add_root


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "query",
        help="ask about installed packages",
        description="Questions about what the root has installed.",
    )
    add_root(p)
    sub = p.add_subparsers(dest="query_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    for name, arg, helptext, func in (
        ("depends", "name", "requirements of an installed package", _depends),
        ("rdepends", "name", "installed packages that need this one", _rdepends),
        (
            "whatprovides",
            "capability",
            "installed packages providing kind(name), a name or a /path",
            _whatprovides,
        ),
        ("files", "name", "files of an installed package", _files),
        ("owner", "path", "packages owning a path", _owner),
    ):
        q = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        q.add_argument(arg)
        add_root(q)
        add_json(q)
        q.set_defaults(func=func)


def _emit(args: argparse.Namespace, items: list, text: list[str]) -> int:
    if args.json:
        output.emit_json(items)
    else:
        for line in text:
            print(line)
    return 0


def _depends(args: argparse.Namespace) -> int:
    from conary.runtime.queries import depends  # on use: conary.runtime adds ~0.5 s to every start-up

    deps = depends(args.root, args.name)
    return _emit(
        args, [{"kind": d.kind, "name": d.name, "version": d.version} for d in deps], [str(d) for d in deps]
    )


def _rdepends(args: argparse.Namespace) -> int:
    from conary.runtime.queries import rdepends  # on use: conary.runtime adds ~0.5 s to every start-up

    names = rdepends(args.root, args.name)
    return _emit(args, names, names)


def _whatprovides(args: argparse.Namespace) -> int:
    from conary.runtime.queries import whatprovides  # on use: conary.runtime adds ~0.5 s to every start-up

    names = whatprovides(args.root, args.capability)
    if not names and not args.json:
        print(f"nothing installed provides {args.capability}")
        return 1
    return _emit(args, names, names)


def _files(args: argparse.Namespace) -> int:
    from conary.runtime.queries import files_of  # on use: conary.runtime adds ~0.5 s to every start-up

    files = files_of(args.root, args.name)
    return _emit(args, files, [f["path"] for f in files])


def _owner(args: argparse.Namespace) -> int:
    from conary.runtime.queries import owner  # on use: conary.runtime adds ~0.5 s to every start-up

    owners = owner(args.root, args.path)
    if not owners and not args.json:
        print(f"no package owns {args.path}")
        return 1
    return _emit(args, owners, owners)
