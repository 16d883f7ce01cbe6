"""Queries of a graph's state in the store: each package's status, and why a package would rebuild."""

from __future__ import annotations

from conary.graph.errors import GraphError
from conary.graph.keys import derivation_key, diff_lines
from conary.graph.plan import BuildRequest, PackageStatus, WhyReport
from conary.graph.session import Session

DONE, PENDING, FAILED, RUNNING = "done", "pending", "failed", "running"


def status(request: BuildRequest) -> tuple[PackageStatus, ...]:
    """Every package of the request's graph, in graph order: done (its current key has a
    checkpoint), running, failed (its last cook of the current key failed) or pending."""
    session = Session(request)
    try:
        running = {r.name: r for r in session.store.running()}
        failures = session.store.failures()
        out: list[PackageStatus] = []
        for name in session.graph.order:
            key = session.key(name)
            digest = key.digest if key else ""
            cp = session.store.get(digest) if key else None
            if cp is not None and session.is_present(cp):
                out.append(PackageStatus(name, DONE, digest, cp.seconds, cp.log))
            elif name in running and running[name].key == digest:
                out.append(PackageStatus(name, RUNNING, digest, 0.0, ""))
            elif key and failures.get(name, ("", ""))[0] == digest:
                out.append(PackageStatus(name, FAILED, digest, 0.0, failures[name][1]))
            else:
                out.append(PackageStatus(name, PENDING, digest, 0.0, ""))
        return tuple(out)
    finally:
        session.store.close()


def why(request: BuildRequest, name: str) -> WhyReport:
    """Which key inputs of NAME changed since its last checkpoint (a diff of the two key texts)."""
    session = Session(request)
    try:
        if name not in session.graph.nodes:
            raise GraphError(
                f"no recipe of the set builds {name}",
                where=", ".join(map(str, request.recipes)),
                hint="name a package built by one of the recipes given",
            )
        previous = session.store.latest(name)
        key = _key_text(session, name)
        if previous is None:
            return WhyReport(name, "", key[0], ())
        return WhyReport(name, previous.key, key[0], tuple(diff_lines(previous.key_text, key[1])))
    finally:
        session.store.close()


def _key_text(session: Session, name: str) -> tuple[str, str]:
    """NAME's key as things stand; a dependency without a checkpoint for its key counts with its
    newest checkpoint (or as unbuilt), since that is what the next build would compare against."""
    node = session.graph.nodes[name]
    digests: dict[str, str] = {}
    for dep in node.deps:
        cp = session.checkpoint(dep)
        digests[dep] = cp.output_digest if cp is not None else "(not built)"
    key = derivation_key(session.recipe_lines(name), session.context, digests)
    return key.digest, key.text


def key_text(request: BuildRequest, name: str) -> str:
    """The canonical key text of NAME as things stand (`conary build key --explain`)."""
    session = Session(request)
    try:
        if name not in session.graph.nodes:
            raise GraphError(
                f"no recipe of the set builds {name}", where=", ".join(map(str, request.recipes))
            )
        return _key_text(session, name)[1]
    finally:
        session.store.close()
