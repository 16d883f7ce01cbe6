"""Entry point: builds the parser from the command modules and renders errors as one line."""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import pkgutil
import sys
import traceback
from collections.abc import Sequence

import conary.cli
from conary import __version__
from conary.errors import ConaryError, InputError

# Every module in conary.cli that defines register(subparsers) is a command group. Handlers are
# stored as `func` on the parsed namespace and return an exit code.
_NOT_COMMANDS = {"main", "output"}

# The top-level commands and the module that registers each. Running one command imports only its
# module, so a command module may import what it uses at module level (the bootstrap's pulls in
# cook, fetch and requests) without every other command paying for it at start-up: `conary remove`
# should cost the removal, not the import of the whole tool. A command missing here still works
# (every module is loaded, as for `conary --help`), only slower to start; tests/test_cli_dispatch.py
# checks every entry against what the modules register, and that the runtime's commands are here.
COMMAND_MODULES = {
    "bootstrap": "conary.cli.bootstrap",
    "build": "conary.cli.build",
    "ccs": "conary.cli.ccs",
    "cook": "conary.cli.cook",
    "graph": "conary.cli.graph",
    "image": "conary.cli.image",
    "install": "conary.cli.install",
    "key": "conary.cli.key",
    "list": "conary.cli.install",
    "new": "conary.cli.new",
    "query": "conary.cli.query",
    "recipe": "conary.cli.recipe",
    "remove": "conary.cli.install",
    "repo": "conary.cli.repo",
    "sandbox": "conary.cli.sandbox",
    "system": "conary.cli.system",
    "update": "conary.cli.install",
}


def _command_modules() -> list[str]:
    return sorted(
        f"conary.cli.{info.name}"
        for info in pkgutil.iter_modules(conary.cli.__path__)
        if info.name not in _NOT_COMMANDS and not info.name.startswith("_")
    )


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors through our one-line format with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message, where=self.prog, hint=f"run '{self.prog} --help'")


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ARGV runs (its first word that is not a global option), or None when there is
    none or top-level help comes first."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return None
        if arg == "--root":
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for COMMAND alone when the table knows its module, else for every command."""
    parser = _Parser(
        prog="conary",
        description="Conary: cook recipes into signed CCS packages, bootstrap systems, manage roots.",
    )
    parser.add_argument("--version", action="version", version=f"conary {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show live output and tracebacks")
    parser.add_argument(
        "--root", default="/", metavar="DIR", help="root that runtime commands act on (default: /)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    known = COMMAND_MODULES.get(command or "")
    for name in [known] if known else _command_modules():
        module = importlib.import_module(name)
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def _wants_json(argv: Sequence[str]) -> bool:
    return "--json" in argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        parser = build_parser(_command_in(argv))
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except ConaryError as err:
        if verbose:
            traceback.print_exc()
        if _wants_json(argv):
            print(json.dumps(err.to_json()), file=sys.stderr)
        else:
            print(f"conary: error: {err.render()}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("conary: error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as err:
        if verbose:
            traceback.print_exc()
        where = f"{err.filename}: " if err.filename else ""
        hint = " (hint: free some space, then run the command again)" if err.errno == errno.ENOSPC else ""
        print(f"conary: error: {where}{err.strerror or err}{hint}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: still one line unless --verbose
        if verbose:
            traceback.print_exc()
        print(
            f"conary: error: internal error: {type(err).__name__}: {err} (hint: rerun with --verbose "
            "and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
