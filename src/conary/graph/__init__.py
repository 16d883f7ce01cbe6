"""RecipeGraph: build many recipes in dependency order, in roots made of packages, with
per-package checkpoints and early cutoff. See docs/graph.md.

    from conary.graph import BuildRequest, build, status, why
    report = build(BuildRequest(recipes=(Path("recipes"),), output=Path("repo"), state=Path("state"),
                                host_seed=True, jobs=2))
    for r in report.results: print(r.name, r.action, r.key, r.output_digest)

Nothing outside this package imports doit.
"""

from __future__ import annotations

from conary.graph.errors import GraphError, StoreError
from conary.graph.executor import CookJob, Executor, LocalExecutor
from conary.graph.keys import Key, KeyContext, derivation_key, output_digest
from conary.graph.loader import RecipeInfo, load_infos
from conary.graph.model import Graph, Node, build_graph
from conary.graph.plan import (
    ACTIONS,
    BLOCKED,
    BUILT,
    CACHED,
    CUTOFF,
    FAILED,
    PENDING,
    BuildEvent,
    BuildReport,
    BuildRequest,
    PackageResult,
    PackageStatus,
    WhyReport,
)
from conary.graph.roots import BuildRoot
from conary.graph.run import build
from conary.graph.session import Session
from conary.graph.status import key_text, status, why
from conary.graph.store import Checkpoint, CheckpointStore

__all__ = [
    "ACTIONS",
    "BLOCKED",
    "BUILT",
    "CACHED",
    "CUTOFF",
    "FAILED",
    "PENDING",
    "BuildEvent",
    "BuildReport",
    "BuildRequest",
    "BuildRoot",
    "Checkpoint",
    "CheckpointStore",
    "CookJob",
    "Executor",
    "Graph",
    "GraphError",
    "Key",
    "KeyContext",
    "LocalExecutor",
    "Node",
    "PackageResult",
    "PackageStatus",
    "RecipeInfo",
    "Session",
    "StoreError",
    "WhyReport",
    "build",
    "build_graph",
    "derivation_key",
    "key_text",
    "load_infos",
    "output_digest",
    "status",
    "why",
]


def load_graph(request: BuildRequest) -> Graph:
    """The request's graph (nodes, edges, order) without building anything."""
    session = Session(request)
    try:
        return session.graph
    finally:
        session.store.close()
