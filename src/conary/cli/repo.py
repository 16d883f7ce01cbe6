"""`conary repo`: configure repositories, sync their signed indexes, and index a directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from conary.ccs import CcsError, default_key_path, load_signing_key
from conary.cli import output
from conary.cli._runtime_args import add_dry_run, add_root
from conary.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "repo",
        help="manage the repositories a root installs from",
        description="Configure package repositories (directories or http URLs), sync their signed "
        "indexes, and write the signed index of a directory of .ccs files.",
    )
    sub = p.add_subparsers(dest="repo_command", metavar="SUBCOMMAND", parser_class=type(p))

    add = sub.add_parser("add", help="add a repository", description="Add repository NAME at DIR or URL.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("location", metavar="DIR|URL")
    add_dry_run(add)
    add_root(add)
    add.set_defaults(func=_add)

    remove = sub.add_parser(
        "remove",
        help="remove a repository",
        description="Forget repository NAME: its configuration and its synced index. Installed "
        "packages stay installed; downloaded package files stay in the package cache until "
        "'conary system gc'.",
    )
    remove.add_argument("name", metavar="NAME")
    add_dry_run(remove)
    add_root(remove)
    remove.set_defaults(func=_remove)

    for verb, enabled in (("enable", True), ("disable", False)):
        toggle = sub.add_parser(
            verb,
            help=f"{verb} a repository",
            description=f"{verb.capitalize()} repository NAME: "
            + (
                "resolution and sync use it again."
                if enabled
                else "resolution and sync skip it; its configuration and synced index stay."
            ),
        )
        toggle.add_argument("name", metavar="NAME")
        add_dry_run(toggle)
        add_root(toggle)
        toggle.set_defaults(func=_toggle, enabled=enabled)

    ls = sub.add_parser("list", help="list repositories", description="List the configured repositories.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_root(ls)
    ls.set_defaults(func=_list)

    sync = sub.add_parser(
        "sync",
        help="fetch and verify repository indexes",
        description="Fetch each enabled repository's index (or the named ones), verify its signature "
        "against the trusted keys, and keep the verified copy.",
    )
    sync.add_argument("names", nargs="*", metavar="NAME")
    add_dry_run(sync)
    sync.add_argument("--json", action="store_true", help="print JSON")
    add_root(sync)
    sync.set_defaults(func=_sync)

    index = sub.add_parser(
        "index",
        help="write the signed index of a directory of .ccs files",
        description="Verify every .ccs file in DIR and write DIR/index.json and DIR/index.json.sig "
        "(deterministic, written atomically).",
    )
    index.add_argument("directory", metavar="DIR")
    add_dry_run(index)
    index.add_argument(
        "--key", metavar="KEY", help="secret signing key (default: the user's default key, see 'ccs keygen')"
    )
    index.add_argument("--json", action="store_true", help="print JSON")
    index.set_defaults(func=_index)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add(args: argparse.Namespace) -> int:
    from conary.runtime.repo import add_repo  # on use: conary.runtime adds ~0.5 s to every start-up

    repo = add_repo(Path(args.root), args.name, args.location, dry_run=args.dry_run)
    verb = "would add" if args.dry_run else "added"
    output.notice(f"{verb} repository {repo.name} ({repo.kind}: {repo.url})")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from conary.runtime.repo import remove_repo  # on use: conary.runtime adds ~0.5 s to every start-up

    repo = remove_repo(Path(args.root), args.name, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    output.notice(f"{verb} repository {repo.name} ({repo.kind}: {repo.url})")
    return 0


def _toggle(args: argparse.Namespace) -> int:
    from conary.runtime.repo import set_repo_enabled  # on use: conary.runtime adds ~0.5 s to every start-up

    repo, changed = set_repo_enabled(Path(args.root), args.name, args.enabled, dry_run=args.dry_run)
    state = "enabled" if args.enabled else "disabled"
    if not changed:
        output.notice(f"repository {repo.name} is already {state}")
    else:
        output.notice(f"{'would be ' if args.dry_run else ''}{state}: repository {repo.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from conary.runtime.repo import list_repos  # on use: conary.runtime adds ~0.5 s to every start-up

    repos = list_repos(Path(args.root))
    if args.json:
        output.emit_json([r.to_json() for r in repos])
        return 0
    if not repos:
        output.notice("no repositories configured (add one with 'conary repo add NAME DIR|URL')")
        return 0
    width = max(len(r.name) for r in repos)
    for repo in repos:
        state = "enabled" if repo.enabled else "disabled"
        print(f"{repo.name:<{width}}  {state:<8}  {repo.kind:<4}  {repo.url}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from conary.runtime.repo import sync  # on use: conary.runtime adds ~0.5 s to every start-up

    results = sync(Path(args.root), args.names, dry_run=args.dry_run)
    if args.json:
        output.emit_json([r.to_json() for r in results])
        return 0
    if not results:
        output.notice("no enabled repositories to sync")
    for result in results:
        suffix = " (dry run: verified, not stored)" if args.dry_run else ""
        print(f"{result.repo.name}: {result.packages} packages, signed by {result.signer_key_id}{suffix}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from conary.runtime.index import write_index  # on use: conary.runtime adds ~0.5 s to every start-up

    key_path = Path(args.key) if args.key else default_key_path()
    if not args.key and not key_path.exists():
        raise InputError(
            "no signing key given and no default key exists",
            where=str(key_path),
            hint="pass --key KEY, or create the default key with 'conary ccs keygen'",
        )
    try:
        key = load_signing_key(key_path)
    except CcsError as err:
        raise InputError(err.what, where=err.where, hint=err.hint)
    entries = write_index(Path(args.directory), key, dry_run=args.dry_run)
    if args.json:
        output.emit_json(
            {"directory": str(Path(args.directory).resolve()), "signer": key.key_id, "packages": len(entries)}
        )
        return 0
    verb = "would index" if args.dry_run else "indexed"
    print(f"{verb} {len(entries)} packages in {args.directory}, signed by {key.key_id}")
    return 0
