"""`conary system trigger`: list, show, enable and disable the built-in triggers of a root.

Registered under the `system` group by conary.cli.system, which calls `register(system_subparsers)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from conary.cli import output
from conary.cli._runtime_args import add_dry_run, add_root


def register(system_subparsers: argparse._SubParsersAction) -> None:
    p = system_subparsers.add_parser(
        "trigger",
        help="list and switch the triggers run after each changeset",
        description="Triggers (ldconfig, depmod, …) run once per changeset when matching paths change "
        "and their handler exists in the root.",
    )
    sub = p.add_subparsers(dest="trigger_command", metavar="SUBCOMMAND", parser_class=type(p))

    ls = sub.add_parser("list", help="list triggers", description="List triggers with their state.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_root(ls)
    ls.set_defaults(func=_list)

    show = sub.add_parser("show", help="show one trigger", description="Show trigger NAME in full.")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_root(show)
    show.set_defaults(func=_show)

    for verb, enabled in (("enable", True), ("disable", False)):
        sp = sub.add_parser(verb, help=f"{verb} a trigger", description=f"{verb.capitalize()} trigger NAME.")
        sp.add_argument("name", metavar="NAME")
        add_dry_run(sp)
        add_root(sp)
        sp.set_defaults(func=_switch, enabled=enabled)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _list(args: argparse.Namespace) -> int:
    from conary.runtime.triggers import trigger_status  # on use: conary.runtime adds ~0.5 s to every start-up

    statuses = trigger_status(Path(args.root))
    if args.json:
        output.emit_json([s.to_json() for s in statuses])
        return 0
    width = max(len(s.name) for s in statuses)
    print(f"{'NAME':<{width}}  {'ENABLED':<7}  {'HANDLER':<30}  PATTERNS")
    for s in statuses:
        handler = s.handler or "(absent)"
        print(f"{s.name:<{width}}  {'yes' if s.enabled else 'no':<7}  {handler:<30}  {' '.join(s.patterns)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    # on use: conary.runtime adds ~0.5 s to every start-up
    from conary.runtime.triggers import get_trigger, trigger_status

    trigger = get_trigger(args.name)
    status = next(s for s in trigger_status(Path(args.root)) if s.name == trigger.name)
    if args.json:
        output.emit_json({**status.to_json(), "handlers": ["/" + h for h in trigger.handlers]})
        return 0
    print(f"name:        {status.name}")
    print(f"description: {status.description}")
    print(f"enabled:     {'yes' if status.enabled else 'no'}")
    looked_for = ", ".join("/" + h for h in trigger.handlers)
    print(f"handler:     {status.handler or f'absent (looked for {looked_for})'}")
    print("patterns:")
    for pattern in status.patterns:
        print(f"  {pattern}")
    return 0


def _switch(args: argparse.Namespace) -> int:
    from conary.runtime.triggers import set_enabled  # on use: conary.runtime adds ~0.5 s to every start-up

    set_enabled(Path(args.root), args.name, args.enabled, dry_run=args.dry_run)
    state = "enabled" if args.enabled else "disabled"
    if args.dry_run:
        output.notice(f"trigger {args.name} would be {state} (dry run)")
    else:
        output.notice(f"trigger {args.name} {state}")
    return 0
