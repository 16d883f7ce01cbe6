"""`conary sandbox`: run a command in the hermetic sandbox by hand, print its plan, check support."""

from __future__ import annotations

import argparse
import os
import shlex

from conary import sandbox
from conary.cli import output
from conary.errors import InputError
from conary.sandbox import cgroup


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sandbox",
        help="run commands in the hermetic build sandbox",
        description="Debug the hermetic sandbox that cooks run their steps in.",
    )
    sub = p.add_subparsers(dest="sandbox_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda _args: _usage(p))

    r = sub.add_parser(
        "run",
        help="run a command in a sandbox",
        description=(
            "Run CMD in fresh mount, PID, UTS, IPC and network namespaces (plus a user namespace when "
            "not root). The root is the host seed (host /usr read-only) unless --sysroot is given. "
            "Exits with CMD's exit code."
        ),
    )
    r.add_argument("--ro", action="append", default=[], metavar="PATH|SRC:DEST", help="bind read-only")
    r.add_argument(
        "--rw",
        action="append",
        default=[],
        metavar="PATH|SRC:DEST",
        help="bind read-write; as root, the tree is first handed to the sandbox's root, host uid "
        "1600000000 (chowned), since host root has no power inside",
    )
    r.add_argument(
        "--sysroot",
        action="append",
        default=[],
        metavar="DIR",
        help="use DIR (read-only) as the toolchain root; repeat to stack roots, the first on top",
    )
    r.add_argument(
        "--host-seed",
        action="store_true",
        help="with --sysroot: the host toolchain at the bottom of the union",
    )
    r.add_argument("--network", action="store_true", help="keep the host network (default: loopback only)")
    r.add_argument("--userns", action="store_true", help="use a user namespace even when root")
    r.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable inside")
    r.add_argument("--cwd", default="/", metavar="DIR", help="working directory inside (default: /)")
    r.add_argument("--hostname", default=sandbox.DEFAULT_HOSTNAME, help="hostname inside")
    r.add_argument("--timeout", type=float, metavar="SECONDS", help="kill the sandbox after SECONDS")
    r.add_argument("--describe", action="store_true", help="print the plan instead of running it")
    r.add_argument("--json", action="store_true", help="with --describe: print the plan as JSON")
    r.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD...", help="the command to run")
    r.set_defaults(func=run_command)

    c = sub.add_parser(
        "check",
        help="check that this machine can run sandboxes, and which protections they have",
        description=(
            "Check user namespace support, then run a probe in a host-seed sandbox with a cook step's "
            "default limits and report each protection (user namespace, capabilities, no_new_privs, "
            "seccomp, nosuid/nodev, death signal, memory and process limits) as on or off, with the "
            "reason read from inside. Memory and process limits use cgroup v2 where a delegated group "
            "offers the memory and pids controllers, rlimits otherwise; their lines say which and why. "
            "Exits 1 when the sandbox does not work or a protection is off."
        ),
    )
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=check_command)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _bind(value: str, readonly: bool) -> sandbox.Bind:
    source, sep, dest = value.partition(":")
    if not source or (sep and not dest):
        raise InputError(f"bad bind {value!r}", where="sandbox run", hint="use PATH or SRC:DEST")
    source = os.path.abspath(source)
    if not os.path.exists(source):
        raise InputError("bind source does not exist", where=source)
    if sep and not dest.startswith("/"):
        raise InputError(f"bind destination must be absolute: {dest!r}", where="sandbox run")
    return sandbox.Bind(source, dest or source, readonly=readonly)


def _env(pairs: list[str]) -> dict[str, str]:
    env = sandbox.minimal_env()
    if "TERM" in os.environ:
        env["TERM"] = os.environ["TERM"]
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"bad --env {pair!r}", where="sandbox run", hint="use K=V")
        env[key] = value
    return env


def build_cli_spec(args: argparse.Namespace) -> sandbox.SandboxSpec:
    toolchain = sandbox.layered_root_ops(args.sysroot, host_seed=args.host_seed or not args.sysroot)
    operations = [*sandbox.base_ops(), *toolchain]
    if args.network:
        operations.extend(sandbox.host_network_ops())
    operations.extend(_bind(v, True) for v in args.ro)
    operations.extend(_bind(v, False) for v in args.rw)
    return sandbox.SandboxSpec(
        operations=tuple(operations),
        hostname=args.hostname,
        network=args.network,
        user_namespace=True if args.userns else None,
        cwd=args.cwd,
        env=_env(args.env),
    )


def run_command(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    spec = build_cli_spec(args)
    if args.describe:
        plan = sandbox.describe(spec)
        if command:
            plan.append(f"command: {shlex.join(command)}")
        if args.json:
            output.emit_json({"plan": plan, "command": command})
        else:
            print("\n".join(plan))
        return 0
    if not command:
        raise InputError("no command given", where="sandbox run", hint="conary sandbox run -- CMD...")
    return sandbox.run(spec, command, timeout=args.timeout)


def check_command(args: argparse.Namespace) -> int:
    from conary.cook.runner import DEFAULT_MEMORY, DEFAULT_PIDS  # the cook's step defaults
    from conary.sandbox.inspect import limits_mechanism, protections

    spec = sandbox.SandboxSpec(
        operations=(*sandbox.base_ops(), *sandbox.host_toolchain_ops()),
        env=sandbox.minimal_env(),
        limits=sandbox.Limits(memory=DEFAULT_MEMORY, pids=DEFAULT_PIDS),
    )
    sandbox.check_support()
    support = cgroup.detect()
    found = protections(spec, support)
    works = found[0].name != "sandbox"
    ok = works and all(p.on for p in found)
    mode = "root mapped to an unprivileged id" if spec.maps_root else "with a user namespace"
    if not spec.maps_root and not spec.uses_user_namespace:
        mode = "as host root"
    if args.json:
        output.emit_json(
            {
                "ok": ok,
                "mode": mode,
                "protections": [{"name": p.name, "on": p.on, "reason": p.reason} for p in found],
                "limits": {"mechanism": limits_mechanism(support), "cgroup_v2": support.reason},
            }
        )
    else:
        print(f"sandbox works ({mode})" if works else "sandbox does not work")
        width = max(len(p.name) for p in found)
        for p in found:
            print(f"  {'on ' if p.on else 'OFF'}  {p.name:<{width}}  {p.reason}")
    return 0 if ok else 1
