"""`conary system`: init, state list|diff|rollback, verify, restore, gc, recover (and triggers)."""

from __future__ import annotations

import argparse

from conary.cli import _trigger, output
from conary.cli._runtime_args import add_json, add_mutating, add_root, render_outcome, report_recovered


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "system",
        help="manage a root's state",
        description="Manage a root's Conary state: states and rollback, verification, repair, cleanup.",
    )
    add_root(p)
    sub = p.add_subparsers(dest="system_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda args: _usage(p))

    q = sub.add_parser(
        "init",
        help="create the database and content store in a root",
        description="Create <root>/var/lib/conary/conary.db and <root>/conary/objects.",
    )
    add_root(q)
    q.add_argument("--dry-run", action="store_true", help="say what would be created; change nothing")
    q.set_defaults(func=_init)

    state = sub.add_parser(
        "state",
        help="list, compare and roll back system states",
        description="Every changeset makes a numbered state.",
    )
    add_root(state)
    ssub = state.add_subparsers(dest="state_command", metavar="COMMAND", parser_class=type(p))
    state.set_defaults(func=lambda args: _usage(state))
    q = ssub.add_parser("list", help="list states", description="List the retained system states.")
    add_root(q)
    add_json(q)
    q.set_defaults(func=_state_list)
    q = ssub.add_parser("diff", help="compare two states", description="Show what changed from A to B.")
    q.add_argument("a", type=int)
    q.add_argument("b", type=int)
    add_root(q)
    add_json(q)
    q.set_defaults(func=_state_diff)
    q = ssub.add_parser(
        "rollback",
        help="return to the exact tree of a state",
        description="Restore the exact tree of state N as a new crash-safe changeset.",
    )
    q.add_argument("number", type=int, metavar="N")
    add_mutating(q)
    q.set_defaults(func=_rollback)

    q = sub.add_parser(
        "verify",
        help="check installed files against the database and content store",
        description="Exit 1 listing every missing, changed or unbacked file.",
    )
    q.add_argument("names", nargs="*", metavar="NAME")
    add_root(q)
    add_json(q)
    q.set_defaults(func=_verify)

    q = sub.add_parser(
        "restore",
        help="repair installed files from the content store",
        description="Rewrite missing or changed files of NAME (or all) from the content store.",
    )
    q.add_argument("names", nargs="*", metavar="NAME")
    add_mutating(q, sandbox=False)
    q.set_defaults(func=_restore)

    q = sub.add_parser(
        "gc",
        help="delete content no retained state needs",
        description="Remove unreferenced content objects, manifests and leftovers. All "
        "states are retained unless --keep-states N forgets all but the newest N.",
    )
    q.add_argument("--keep-states", type=int, metavar="N")
    add_mutating(q, sandbox=False)
    q.set_defaults(func=_gc)

    q = sub.add_parser(
        "recover",
        help="finish or undo an interrupted transaction",
        description="Every runtime command does this first; this command only does that.",
    )
    add_root(q)
    q.add_argument("--dry-run", action="store_true", help="say what recovery would do; change nothing")
    q.set_defaults(func=_recover)

    _trigger.register(sub)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _init(args: argparse.Namespace) -> int:
    from conary.runtime import init_root  # on use: conary.runtime adds ~0.5 s to every start-up

    created = init_root(args.root, dry_run=args.dry_run)
    if args.dry_run:
        layout = "var/lib/conary/conary.db, var/lib/conary/journal, conary/objects"
        print(f"would create {layout} in {args.root}" if created else f"already initialised: {args.root}")
        return 0
    print(f"{'initialised' if created else 'already initialised'}: {args.root}")
    return 0


def _state_list(args: argparse.Namespace) -> int:
    from conary.runtime import list_states  # on use: conary.runtime adds ~0.5 s to every start-up

    states = list_states(args.root)
    if args.json:
        output.emit_json([s.to_json() for s in states])
        return 0
    for s in states:
        names = ", ".join(p.label for p in s.packages) or "(empty)"
        print(f"{s.number:>4}  {s.created}  {s.summary}\n      {names}")
    return 0


def _state_diff(args: argparse.Namespace) -> int:
    from conary.runtime import diff_states  # on use: conary.runtime adds ~0.5 s to every start-up

    diff = diff_states(args.root, args.a, args.b)
    if args.json:
        output.emit_json(diff.to_json())
        return 0
    for label in diff.added:
        print(f"+ {label}")
    for label in diff.removed:
        print(f"- {label}")
    for old, new in diff.changed:
        print(f"~ {old} -> {new}")
    print(
        f"files: {len(diff.files_added)} added, {len(diff.files_removed)} removed, "
        f"{len(diff.files_changed)} changed"
    )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from conary.runtime import rollback  # on use: conary.runtime adds ~0.5 s to every start-up

    outcome = rollback(args.root, args.number, sandbox=args.sandbox, dry_run=args.dry_run)
    return render_outcome(outcome, args.json)


def _verify(args: argparse.Namespace) -> int:
    from conary.runtime import verify  # on use: conary.runtime adds ~0.5 s to every start-up

    problems = verify(args.root, args.names)
    if args.json:
        output.emit_json([p.to_json() for p in problems])
    else:
        for p in problems:
            print(f"/{p.path}: {p.what} ({', '.join(p.packages)})")
        if not problems:
            print("verify: all installed files match")
    return 1 if problems else 0


def _restore(args: argparse.Namespace) -> int:
    from conary.runtime import restore  # on use: conary.runtime adds ~0.5 s to every start-up

    problems = restore(args.root, args.names, dry_run=args.dry_run)
    if args.json:
        output.emit_json({"dry_run": args.dry_run, "repaired": [p.to_json() for p in problems]})
        return 0
    verb = "would repair" if args.dry_run else "repaired"
    for p in problems:
        print(f"{verb} /{p.path} ({p.what})")
    print(f"{verb} {len(problems)} entr{'y' if len(problems) == 1 else 'ies'}")
    return 0


def _gc(args: argparse.Namespace) -> int:
    from conary.runtime import gc  # on use: conary.runtime adds ~0.5 s to every start-up

    report = gc(args.root, keep_states=args.keep_states, dry_run=args.dry_run)
    if args.json:
        output.emit_json(report.to_json())
        return 0
    verb = "would free" if args.dry_run else "freed"
    dropped = f", forgot states {', '.join(map(str, report.states_dropped))}" if report.states_dropped else ""
    print(
        f"{verb} {report.bytes} bytes: {report.objects} objects, {report.manifests} manifests, "
        f"{report.temp_files} temporary files, {report.cached_packages} downloaded packages{dropped}"
    )
    return 0


def _recover(args: argparse.Namespace) -> int:
    from conary.runtime import recover  # on use: conary.runtime adds ~0.5 s to every start-up

    lines = recover(args.root, dry_run=args.dry_run)
    report_recovered(lines)
    if not lines:
        print("nothing to recover")
    return 0
