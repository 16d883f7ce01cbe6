"""The recipe graph: nodes are recipes, edges their build dependencies, and one deterministic order.

Edges come from `build.requires` and `build.makedepends`, resolved against the packages the set
itself builds, then against what the seed provides. The order is the critical path first (the
longest chain of work still to come, weighted by each package's last build time when it is known),
ties broken by name, so the same set of recipes is always listed and dispatched the same way.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conary.graph.errors import GraphError
from conary.graph.loader import RecipeInfo


@dataclass(frozen=True)
class Node:
    """One recipe of the graph; `deps` are the names of the nodes it builds against."""

    name: str
    version: str
    release: str
    path: Path
    lines: tuple[str, ...]  # the recipe's own lines of its derivation key
    deps: tuple[str, ...]  # sorted node names (requires and makedepends that the set builds)
    runtime_deps: tuple[str, ...]  # sorted node names from build.requires alone (run-time closure)
    seed_deps: tuple[str, ...]  # sorted requirements that the seed provides


@dataclass(frozen=True)
class Graph:
    nodes: Mapping[str, Node]
    order: tuple[str, ...]  # dependencies before dependents; critical path first, ties by name

    def dependents(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for dep in node.deps:
                out[dep].append(node.name)
        return {name: tuple(sorted(users)) for name, users in out.items()}

    def edges(self) -> list[tuple[str, str]]:
        """(dependent, dependency) pairs, sorted."""
        return sorted((node.name, dep) for node in self.nodes.values() for dep in node.deps)

    def runtime_closure(self, names: Iterable[str]) -> tuple[str, ...]:
        """*names* and, transitively, what they need at run time (their build.requires), sorted."""
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(self.nodes[name].runtime_deps)
        return tuple(sorted(seen))


def requirement_name(requirement: str) -> str:
    """The package a requirement names: `zlib:devel` → `zlib` (a component of it)."""
    return requirement.split(":", 1)[0].strip()


def build_graph(
    recipes: Sequence[RecipeInfo],
    *,
    seed_provides: Container[str] | None = frozenset(),
    break_edges: Iterable[tuple[str, str]] = (),
    weights: Mapping[str, float] | None = None,
) -> Graph:
    """Resolve every build dependency and order the nodes.

    *seed_provides* is what the seed offers (package names and typed provides such as
    `soname(libz.so.1)`); None means "anything the set does not build" (the host as the seed, whose
    contents are not package data). *break_edges* are (dependent, dependency) pairs to drop, as a
    profile names them to break a toolchain cycle."""
    names = {info.name for info in recipes}
    broken = set(break_edges)
    nodes: dict[str, Node] = {}
    for info in recipes:
        name, path = info.name, info.path
        deps: set[str] = set()
        runtime: set[str] = set()
        seeded: set[str] = set()
        for field in ("requires", "makedepends"):
            for requirement in getattr(info, field):
                dep = requirement_name(requirement)
                if dep == name or (name, dep) in broken:
                    continue
                if dep in names:
                    deps.add(dep)
                    if field == "requires":
                        runtime.add(dep)
                elif seed_provides is None or dep in seed_provides or requirement in seed_provides:
                    seeded.add(requirement)
                else:
                    raise GraphError(
                        f"build dependency '{requirement}' of {name} is not built by any recipe of "
                        "the set nor provided by the seed",
                        where=f"{path}: build.{field}",
                        hint=f"add a recipe that builds {dep}, or a seed that provides it",
                    )
        nodes[name] = Node(
            name=name,
            version=info.version,
            release=info.release,
            path=path,
            lines=info.lines,
            deps=tuple(sorted(deps)),
            runtime_deps=tuple(sorted(runtime)),
            seed_deps=tuple(sorted(seeded)),
        )
    check_acyclic(nodes)
    return Graph(nodes=nodes, order=critical_path_order(nodes, weights or {}))


def check_acyclic(nodes: Mapping[str, Node]) -> None:
    """Raise GraphError naming the exact cycle (a -> b -> a) when the dependencies have one."""
    done: set[str] = set()
    for start in sorted(nodes):
        if start in done:
            continue
        # An explicit stack: a long chain of recipes must not exhaust Python's recursion limit.
        stack = [(start, iter(nodes[start].deps))]
        on_path = [start]
        on_path_set = {start}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path_set.discard(on_path.pop())
                done.add(node)
            elif child in on_path_set:
                cycle = [*on_path[on_path.index(child) :], child]
                raise GraphError(
                    "dependency cycle: " + " -> ".join(cycle),
                    where=str(nodes[child].path),
                    hint="drop one of these build dependencies, or name the edge to break in the "
                    "profile's break_edges",
                )
            elif child not in done:
                stack.append((child, iter(nodes[child].deps)))
                on_path.append(child)
                on_path_set.add(child)


def critical_path_order(nodes: Mapping[str, Node], weights: Mapping[str, float]) -> tuple[str, ...]:
    """A topological order that starts, among the ready nodes, with the one heading the longest
    chain of remaining work (BitBake and Ninja do the same); ties by name."""
    dependents: dict[str, list[str]] = {name: [] for name in nodes}
    for node in nodes.values():
        for dep in node.deps:
            dependents[dep].append(node.name)
    # Longest path to a sink, computed in reverse topological order (Kahn on the reversed graph).
    pending_users = {name: len(users) for name, users in dependents.items()}
    ready = [name for name, count in pending_users.items() if count == 0]
    chain: dict[str, float] = {}
    while ready:
        name = ready.pop()
        own = weights.get(name, 1.0)
        chain[name] = own + max((chain[user] for user in dependents[name]), default=0.0)
        for dep in nodes[name].deps:
            pending_users[dep] -= 1
            if pending_users[dep] == 0:
                ready.append(dep)
    waiting = {name: len(node.deps) for name, node in nodes.items()}
    heap = [(-chain[name], name) for name, count in waiting.items() if count == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, name = heapq.heappop(heap)
        order.append(name)
        for user in dependents[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(heap, (-chain[user], user))
    return tuple(order)
