"""Top-level runtime commands: install, remove, update, list."""

from __future__ import annotations

import argparse

from conary.cli import output
from conary.cli._runtime_args import add_json, add_mutating, add_root, render_outcome


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "install",
        help="install packages into a root",
        description="Install .ccs files, or NAME[:component][=VERSION] resolved from the enabled "
        "repositories, as one crash-safe changeset (a new system state).",
    )
    p.add_argument("packages", nargs="+", metavar="PKG", help="a .ccs file or NAME[:component][=VERSION]")
    add_mutating(p)
    _trust_args(p)
    p.set_defaults(func=_install)

    p = subparsers.add_parser(
        "remove",
        help="remove installed packages",
        description="Remove packages (NAME) or single components (NAME:component) as one changeset.",
    )
    p.add_argument("names", nargs="+", metavar="NAME")
    add_mutating(p)
    p.add_argument("--nodeps", action="store_true", help="do not refuse to break requirements")
    p.set_defaults(func=_remove)

    p = subparsers.add_parser(
        "update",
        help="update installed packages",
        description="Update packages to the given newer .ccs files, or to the newest versions in the "
        "repositories (all installed packages when none is named).",
    )
    p.add_argument("packages", nargs="*", metavar="PKG", help="a .ccs file or a package NAME")
    add_mutating(p)
    _trust_args(p)
    p.set_defaults(func=_install)

    p = subparsers.add_parser(
        "list", help="list installed packages", description="List the packages installed in the root."
    )
    add_root(p)
    add_json(p)
    p.set_defaults(func=_list)


def _trust_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="install .ccs files whose signer the root does not trust (the signature is still checked)",
    )
    p.add_argument("--nodeps", action="store_true", help="do not refuse unmet requirements")


def _install(args: argparse.Namespace) -> int:
    from conary.runtime import install, update  # on use: conary.runtime adds ~0.5 s to every start-up

    operation = update if args.command == "update" else install
    outcome = operation(
        args.root,
        args.packages,
        allow_untrusted=args.allow_untrusted,
        sandbox=args.sandbox,
        check_deps=not args.nodeps,
        dry_run=args.dry_run,
    )
    return render_outcome(outcome, args.json)


def _remove(args: argparse.Namespace) -> int:
    from conary.runtime import remove  # on use: conary.runtime adds ~0.5 s to every start-up

    outcome = remove(
        args.root, args.names, sandbox=args.sandbox, check_deps=not args.nodeps, dry_run=args.dry_run
    )
    return render_outcome(outcome, args.json)


def _list(args: argparse.Namespace) -> int:
    from conary.runtime import list_installed  # on use: conary.runtime adds ~0.5 s to every start-up

    packages = list_installed(args.root)
    if args.json:
        output.emit_json([p.to_json() for p in packages])
        return 0
    for p in packages:
        print(f"{p.name}-{p.version}-{p.release}.{p.arch} [{','.join(p.components)}]")
    if not packages:
        print("no packages installed")
    return 0
