"""`conary key`: the public keys a root trusts for packages and repository indexes."""

from __future__ import annotations

import argparse
from pathlib import Path

from conary.cli import output
from conary.cli._runtime_args import add_dry_run, add_root


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "key",
        help="manage trusted signing keys",
        description="Packages and repository indexes install only if a key the root trusts signed them.",
    )
    sub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND", parser_class=type(p))

    add = sub.add_parser("add", help="trust a public key", description="Trust the public key in KEY.pub.")
    add.add_argument("path", metavar="KEY.pub")
    add_dry_run(add)
    add_root(add)
    add.set_defaults(func=_add)

    ls = sub.add_parser("list", help="list trusted keys", description="List the keys the root trusts.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_root(ls)
    ls.set_defaults(func=_list)

    rm = sub.add_parser("remove", help="stop trusting a key", description="Stop trusting KEY_ID.")
    rm.add_argument("key_id", metavar="KEY_ID")
    add_dry_run(rm)
    add_root(rm)
    rm.set_defaults(func=_remove)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add(args: argparse.Namespace) -> int:
    from conary.runtime.keys import add_key  # on use: conary.runtime adds ~0.5 s to every start-up

    key_id = add_key(Path(args.root), args.path, dry_run=args.dry_run)
    output.notice(f"would trust key {key_id} (dry run)" if args.dry_run else f"trusted key {key_id}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from conary.runtime.keys import list_keys  # on use: conary.runtime adds ~0.5 s to every start-up

    keys = list_keys(Path(args.root))
    if args.json:
        output.emit_json(
            [{"key_id": k.key_id, "public_key": k.key.raw.hex(), "path": str(k.path)} for k in keys]
        )
        return 0
    if not keys:
        output.notice("no trusted keys (add one with 'conary key add KEY.pub')")
    for key in keys:
        print(f"{key.key_id}  ed25519  {key.key.raw.hex()}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from conary.runtime.keys import remove_key  # on use: conary.runtime adds ~0.5 s to every start-up

    key_id = remove_key(Path(args.root), args.key_id, dry_run=args.dry_run)
    output.notice(f"would remove key {key_id} (dry run)" if args.dry_run else f"removed key {key_id}")
    return 0
