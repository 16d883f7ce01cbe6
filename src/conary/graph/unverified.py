"""`--skip-verify` in the graph: the bytes a source actually is, known before any key is computed.

A derivation key names the source checksums a recipe pins. When a run skips verification, a
source may be built from other bytes (a re-rolled tarball), and its key must say so: a verified
build and an unverified one must never share a checkpoint. So such a run fetches every source
first (`prefetch`), which leaves in the source cache a note for each pin that other bytes stood in
for; each key then gains a line `unverified:PINNED:ACTUAL` per such source. A pin whose own bytes
are in the cache adds nothing: those bytes are verified, and the key is the verified build's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from conary.cook import CookOptions, fetch_sources, unverified_warning
from conary.errors import ConaryError
from conary.fetch import Checksum, SourceCache, default_cache_dir
from conary.graph.loader import recipe_files
from conary.graph.plan import BuildRequest
from conary.recipe import Recipe
from conary.recipe.loader import check_path

# The key lines that name a fetched file by its checksum: "source:archive:sha256:…",
# "source:additional[0]:sha256:…", "patch:0:sha256:…" (a local patch's digest never has a note).
_PINNED_PREFIXES = ("source:archive:", "source:additional[", "patch:")


def source_cache(request: BuildRequest) -> SourceCache:
    return SourceCache(request.source_cache if request.source_cache is not None else default_cache_dir())


def unverified_lines(lines: Sequence[str], cache: SourceCache) -> tuple[str, ...]:
    """`unverified:PINNED:ACTUAL` for each pinned checksum of a recipe's key *lines* whose bytes
    are not in *cache* but whose noted stand-in is."""
    out: list[str] = []
    for line in lines:
        if not line.startswith(_PINNED_PREFIXES):
            continue
        pinned = str(Checksum.parse(line.split(":", 2)[2]))
        if cache.path_for(pinned) is not None:
            continue
        substitute = cache.substitute_for(pinned)
        if substitute is not None:
            out.append(f"unverified:{pinned}:{substitute.actual}")
    return tuple(out)


def prefetch(request: BuildRequest) -> tuple[str, ...]:
    """Fetch every source of the request's recipes, taking unverified bytes where the pinned ones
    are nowhere; warn once per such source. Returns `NAME:PINNED:ACTUAL` for each, sorted."""
    warn = request.warn or _to_stderr
    options = CookOptions(
        source_cache=request.source_cache,
        mirrors=request.mirrors,
        offline=request.offline,
        target=request.target,
        skip_verify=True,
    )
    found: list[str] = []
    for path, recipe in _recipes(request.recipes):
        try:
            fetched = fetch_sources(recipe, path.resolve().parent, options)
        except ConaryError:
            # A source no place has: the package's cook fails on it as it always does (its log
            # and status say so, and --keep-going builds the rest), so the run goes on to that.
            continue
        for item in fetched.values():
            if item.substitute is not None:
                warn(unverified_warning(recipe.package.name, item))
                found.append(f"{recipe.package.name}:{item.checksum}:{item.actual}")
    return tuple(sorted(found))


def _recipes(paths: Sequence[Path]) -> Iterator[tuple[Path, Recipe]]:
    """The recipes of the set. A file that does not validate is left to the graph's loader, which
    reports it the way it reports every invalid recipe."""
    for found, _explicit in recipe_files(paths):
        recipe = check_path(Path(found)).recipe
        if recipe is not None:
            yield Path(found), recipe


def _to_stderr(text: str) -> None:
    print(f"conary: warning: {text}", file=sys.stderr)
