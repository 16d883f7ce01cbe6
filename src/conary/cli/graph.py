"""`conary graph show RECIPE_OR_DIR...`: the recipe graph's nodes, edges and build order."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from conary.cli import output
from conary.graph import BuildRequest, load_graph

DESCRIPTION = """\
Load the recipes given (files, or directories searched for recipes), resolve their build
dependencies (build.requires and build.makedepends) against the set, and print the nodes, the
edges and the build order: dependencies first, the longest chain of work first, ties by name.
A dependency the set does not build is taken from the seed (--seed host: the host's packages).
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "graph",
        help="show a recipe graph",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="graph_command", metavar="COMMAND")
    show = sub.add_parser(
        "show",
        help="nodes, edges and order",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("recipes", nargs="+", metavar="RECIPE_OR_DIR", type=Path)
    show.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="PKG_OR_DIR|host",
        help="what the seed provides (as for 'conary build')",
    )
    fmt = show.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print nodes, edges and order as JSON")
    fmt.add_argument("--dot", action="store_true", help="print the graph in Graphviz's dot language")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="conary-graph.") as scratch:
        request = BuildRequest(
            recipes=tuple(args.recipes),
            output=Path(scratch) / "repo",
            state=Path(scratch) / "state",
            seed=tuple(Path(s) for s in args.seed if s != "host"),
            host_seed="host" in args.seed,
        )
        graph = load_graph(request)
    edges = graph.edges()
    if args.json:
        output.emit_json(
            {
                "nodes": [
                    {
                        "name": n.name,
                        "version": n.version,
                        "recipe": str(n.path),
                        "deps": list(n.deps),
                        "seed_deps": list(n.seed_deps),
                    }
                    for n in (graph.nodes[x] for x in graph.order)
                ],
                "edges": [list(e) for e in edges],
                "order": list(graph.order),
            }
        )
    elif args.dot:
        print("digraph recipes {")
        for name in graph.order:
            print(f'  "{name}";')
        for user, dep in edges:
            print(f'  "{user}" -> "{dep}";')
        print("}")
    else:
        for i, name in enumerate(graph.order, 1):
            node = graph.nodes[name]
            deps = ", ".join(node.deps) or "-"
            print(f"{i:>4}  {name} {node.version}  <- {deps}")
        print(f"{len(graph.order)} recipes, {len(edges)} edges")
    return 0
