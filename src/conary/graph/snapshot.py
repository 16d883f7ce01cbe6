"""The no-op fast path: the last complete run's keys, valid while none of its inputs changed.

After a run that left every package with a checkpoint, the store keeps a snapshot: a fingerprint of
everything the keys were computed from (the request's stage, target, toolchain, seed and break
edges; the stat signature of every recipe file, of the local files its key reads, and of every
seed package; this Conary's key and cache
formats) and each package's key, in graph order. A run whose fingerprint matches needs no recipe,
graph or key work: it checks that each key's checkpoint and package are still in place, and
reports them cached. Anything else (a changed recipe or local input, a missing package) takes the
full path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence

from conary import __version__
from conary.graph.keys import KEY_FORMAT
from conary.graph.loader import CACHE_FORMAT, signature
from conary.graph.plan import BuildRequest
from conary.graph.store import Checkpoint, CheckpointStore

SNAPSHOT_FORMAT = "graph-snapshot 1"


def fingerprint(
    request: BuildRequest,
    packages: Sequence[str],
    recipes: Sequence[tuple[str, str]],
    unverified: Sequence[str] = (),
) -> str:
    """The fingerprint of REQUEST's inputs; PACKAGES are its seed and base .ccs files, RECIPES the
    (path, signature) of its recipe files (loader.current_signatures), UNVERIFIED the sources
    a --skip-verify run takes other bytes for (conary.graph.unverified.prefetch)."""
    fields = {
        "recipes": [os.path.abspath(p) for p in request.recipes],
        "stage": request.stage,
        "target": None if request.target is None else dataclasses.asdict(request.target),
        "toolchain": request.toolchain,
        "host_seed": request.host_seed,
        "break_edges": sorted(request.break_edges),
        "seed": [os.path.abspath(p) for p in request.seed],
        "base": [os.path.abspath(p) for p in request.base],
        "skip_verify": request.skip_verify,
        "unverified": sorted(unverified),
    }
    h = hashlib.sha256()
    for line in (SNAPSHOT_FORMAT, CACHE_FORMAT, KEY_FORMAT, __version__, json.dumps(fields, sort_keys=True)):
        h.update(line.encode() + b"\n")
    for path, sig in recipes:
        h.update(f"recipe {path} {sig}\n".encode())
    for path in packages:
        h.update(f"package {os.path.abspath(path)} {signature(path)}\n".encode())
    return h.hexdigest()


def slot(request: BuildRequest) -> str:
    """Which snapshot a request reads and writes: one per stage and repository, so the stages of a
    bootstrap that share one store keep one each."""
    return hashlib.sha256(f"{request.stage}\n{os.path.abspath(request.output)}".encode()).hexdigest()[:16]


def cached_checkpoints(store: CheckpointStore, request: BuildRequest, print_: str) -> list[Checkpoint] | None:
    """The checkpoints of the snapshot's packages, in graph order, when the fingerprint matches
    and every one of them still has its row; None otherwise."""
    snap = store.snapshot(slot(request))
    if snap is None or snap.get("fingerprint") != print_:
        return None
    keys = [key for _, key in snap["entries"]]
    found = store.keys(keys)
    if len(found) != len(keys):
        return None
    return [found[key] for key in keys]


def save(
    store: CheckpointStore, request: BuildRequest, print_: str, entries: Sequence[tuple[str, str]]
) -> None:
    snap = store.snapshot(slot(request))
    if (
        snap is not None
        and snap.get("fingerprint") == print_
        and [tuple(e) for e in snap["entries"]] == list(entries)
    ):
        return
    store.set_snapshot(slot(request), {"fingerprint": print_, "entries": [list(e) for e in entries]})
