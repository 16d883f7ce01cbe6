"""Install by name: pick packages from the enabled repositories with resolvelib.

The algorithm is resolvelib's and knows nothing of packages; everything about them lives in
``IndexProvider``: which candidates match a request, how sonames, pkgconfig modules, binaries and
files map to the packages that provide them, and which versions are preferred (highest first).

A requirement on a capability (``soname(libfoo.so.1)``) has its own identifier, and its candidates
are small "provided by PACKAGE" records whose only dependency pins that package; so two packages
that need the same library agree on one provider, and the providing package is resolved under its
own name like any other.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import resolvelib

from conary.ccs import DEPENDENCY_KINDS, Dependency, PublicKey
from conary.errors import ConaryError, InputError
from conary.runtime.db import Database
from conary.runtime.index import IndexEntry
from conary.runtime.keys import describe_trust, trusted_keys
from conary.runtime.layout import layout
from conary.runtime.repo import Repo, enabled_repos, fetch_package, list_repos, load_index


class ResolveError(ConaryError):
    """No set of packages satisfies the request."""


# --- versions ----------------------------------------------------------------------------------

_SEGMENT = re.compile(r"\d+|[A-Za-z]+|~")


def compare_versions(a: str, b: str) -> int:
    """Compare two version strings the rpm way: numeric runs numerically, '~' sorts before all."""
    if a == b:
        return 0
    sa, sb = _SEGMENT.findall(a), _SEGMENT.findall(b)
    for x, y in zip(sa, sb, strict=False):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1 if int(x) > int(y) else 0
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1  # a number is newer than letters
        return -1 if x < y else 1
    if len(sa) == len(sb):
        return 0
    longer, sign = (sa, 1) if len(sa) > len(sb) else (sb, -1)
    return -sign if longer[min(len(sa), len(sb))] == "~" else sign


def compare_evr(a: tuple[str, str], b: tuple[str, str]) -> int:
    return compare_versions(a[0], b[0]) or compare_versions(a[1], b[1])


_CONSTRAINT = re.compile(r"^\s*(>=|<=|==|=|>|<)?\s*(\S+)\s*$")


def version_matches(constraint: str, version: str, release: str) -> bool:
    """Does VERSION-RELEASE satisfy CONSTRAINT ('', '1.2', '>= 1.2', '= 1.2-3', '< 2')?"""
    if not constraint.strip():
        return True
    match = _CONSTRAINT.match(constraint)
    if not match:
        return False
    op, wanted = match.group(1) or "=", match.group(2)
    if "-" in wanted:
        want_v, want_r = wanted.rsplit("-", 1)
        cmp = compare_evr((version, release), (want_v, want_r))
    else:
        cmp = compare_versions(version, wanted)
    return {
        "=": cmp == 0,
        "==": cmp == 0,
        ">=": cmp >= 0,
        "<=": cmp <= 0,
        ">": cmp > 0,
        "<": cmp < 0,
    }[op]


# --- what is installed -------------------------------------------------------------------------

InstalledCheck = Callable[[Dependency], bool]


def installed_checker(installed: Any) -> InstalledCheck:
    """Turn what the caller knows about installed packages into one question: is DEP satisfied?

    Accepts None (nothing installed), a callable ``(Dependency) -> bool``, a mapping or iterable of
    manifests (objects with name, version, release, provides and optionally files) or of records
    with a ``.manifest`` (the core's ``Database.installed()``), and/or ``Dependency`` provides.
    """
    if installed is None:
        return lambda dep: False
    if callable(installed):
        return installed
    if isinstance(installed, Mapping):
        installed = installed.values()
    provides: dict[tuple[str, str], list[str]] = {}
    files: set[str] = set()
    packages: dict[str, list[tuple[str, str]]] = {}
    for item in installed:
        if isinstance(item, Dependency):
            provides.setdefault(item.key, []).append(item.version)
            continue
        item = getattr(item, "manifest", item)  # the core's Selected records carry their manifest
        packages.setdefault(item.name, []).append((item.version, item.release))
        for dep in getattr(item, "provides", ()):
            provides.setdefault((dep.kind, dep.name), []).append(dep.version)
        for entry in getattr(item, "files", ()):
            path = entry if isinstance(entry, str) else entry.path
            files.add(path.lstrip("/"))

    def check(dep: Dependency) -> bool:
        if dep.kind == "package" and dep.name in packages:
            return any(version_matches(dep.version, v, r) for v, r in packages[dep.name])
        if dep.kind in ("file", "interpreter") and dep.name.lstrip("/") in files:
            return True
        return dep.key in provides

    return check


# --- requirements and candidates ---------------------------------------------------------------


@dataclass(frozen=True)
class PackageRequirement:
    name: str
    constraint: str = ""  # '', '1.2', '>= 1.2', '= 1.2-3'
    explicit: bool = False  # asked for by the user: the repository copy is wanted, not the installed one
    pin: tuple[str, str, str, str] | None = None  # (version, release, arch, repo) chosen via a capability
    # a capability only this package provides: any version of it that provides the capability
    capability: tuple[str, str] | None = None

    def __str__(self) -> str:
        if self.capability:
            return f"{self.capability[0]}({self.capability[1]})"
        return f"package({self.name}{' ' + self.constraint if self.constraint else ''})"


@dataclass(frozen=True)
class CapabilityRequirement:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}({self.name})"


Requirement = PackageRequirement | CapabilityRequirement


@dataclass(frozen=True)
class PackageCandidate:
    entry: IndexEntry
    repo: Repo
    repo_rank: int

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True)
class InstalledCandidate:
    """The requirement is already met in the root: nothing to install for it."""

    identifier: str


@dataclass(frozen=True)
class ProvidedBy:
    """A capability satisfied by one repository package."""

    identifier: str
    provider: PackageCandidate


Candidate = PackageCandidate | InstalledCandidate | ProvidedBy


def _identifier(requirement: Requirement) -> str:
    if isinstance(requirement, PackageRequirement):
        return requirement.name
    return f"{requirement.kind}({requirement.name})"


_BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "usr/local/bin", "usr/local/sbin")


def capabilities(entry: IndexEntry) -> set[tuple[str, str]]:
    """Every (kind, name) ENTRY satisfies: its provides, plus what its file list implies."""
    caps = {(d.kind, d.name) for d in entry.provides}
    for d in entry.provides:
        if d.kind == "soname" and d.name.endswith(")") and "(" in d.name:
            # A request may leave out the ABI qualifier: soname(libz.so.1) matches libz.so.1(x86-64).
            caps.add(("soname", d.name[: d.name.rindex("(")]))
    for path in entry.files:
        caps.add(("file", "/" + path))
        caps.add(("interpreter", "/" + path))
        directory, _, base = path.rpartition("/")
        if directory in _BIN_DIRS:
            caps.add(("binary", base))
    return caps


class IndexProvider(resolvelib.AbstractProvider):
    """Answers resolvelib's questions from the repository indexes and the installed set."""

    def __init__(
        self, packages: Sequence[PackageCandidate], installed: InstalledCheck, *, with_deps: bool = True
    ) -> None:
        """*with_deps* False chooses the requested packages only (``install --nodeps``)."""
        self._installed = installed
        self._with_deps = with_deps
        self._by_name: dict[str, list[PackageCandidate]] = {}
        for cand in packages:
            self._by_name.setdefault(cand.name, []).append(cand)
        for cands in self._by_name.values():
            cands.sort(key=self._rank)
        # (kind, name) -> its providers, each provider's versions best first.
        self._providers: dict[tuple[str, str], list[PackageCandidate]] = {}
        self._caps: dict[int, set[tuple[str, str]]] = {}
        self._satisfied: dict[tuple[int, int], tuple[Requirement, Candidate, bool]] = {}
        for cands in self._by_name.values():
            for cand in cands:
                caps = capabilities(cand.entry)
                self._caps[id(cand)] = caps
                for cap in caps:
                    self._providers.setdefault(cap, []).append(cand)

    @staticmethod
    def _rank(cand: PackageCandidate) -> Any:
        return functools.cmp_to_key(_prefer)(cand)

    def package_names(self) -> set[str]:
        return set(self._by_name)

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        item = requirement_or_candidate
        if isinstance(item, PackageCandidate):
            return item.name
        if isinstance(item, InstalledCandidate | ProvidedBy):
            return item.identifier
        return _identifier(item)

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> Any:
        # Explicit requests first, then whatever has fewest choices left.
        explicit = any(
            isinstance(info.requirement, PackageRequirement) and info.requirement.explicit
            for info in information[identifier]
        )
        return (not explicit, sum(1 for _ in candidates[identifier]), identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Requirement]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> list[Candidate]:
        reqs = list(requirements[identifier])
        bad = set(incompatibilities[identifier])
        first = reqs[0]
        found: list[Candidate] = []
        if isinstance(first, CapabilityRequirement):
            if self._installed(Dependency(first.kind, first.name, "")):
                found.append(InstalledCandidate(identifier))
            # Every version of every provider, best first within each provider; the pin each one
            # carries lets the package's own requirements veto it and resolvelib try the next.
            providers = self._providers.get((first.kind, first.name), ())
            found.extend(ProvidedBy(identifier, cand) for cand in providers)
        else:
            package_reqs = [r for r in reqs if isinstance(r, PackageRequirement)]
            if all(self._installed_satisfies(r) for r in package_reqs):
                found.append(InstalledCandidate(identifier))
            found.extend(self._by_name.get(identifier, ()))
        return [c for c in found if c not in bad and all(self.is_satisfied_by(r, c) for r in reqs)]

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        # resolvelib asks this for every pinned criterion on every round: answer each pair once.
        # The memo keeps both objects alive, so their ids cannot be reused while it exists.
        key = (id(requirement), id(candidate))
        known = self._satisfied.get(key)
        if known is None:
            known = (requirement, candidate, self._satisfies(requirement, candidate))
            self._satisfied[key] = known
        return known[2]

    def _satisfies(self, requirement: Requirement, candidate: Candidate) -> bool:
        if isinstance(requirement, CapabilityRequirement):
            return isinstance(candidate, InstalledCandidate | ProvidedBy)
        if isinstance(candidate, InstalledCandidate):
            return self._installed_satisfies(requirement)
        if not isinstance(candidate, PackageCandidate) or candidate.name != requirement.name:
            return False
        entry = candidate.entry
        if requirement.pin is not None:
            return requirement.pin == (entry.version, entry.release, entry.arch, candidate.repo.name)
        if requirement.capability is not None and requirement.capability not in self._caps_of(candidate):
            return False
        return version_matches(requirement.constraint, entry.version, entry.release)

    def _installed_satisfies(self, requirement: PackageRequirement) -> bool:
        if requirement.explicit or requirement.pin is not None:
            return False
        if requirement.capability is not None:
            return self._installed(Dependency(*requirement.capability, ""))
        return self._installed(Dependency("package", requirement.name, requirement.constraint))

    def _caps_of(self, candidate: PackageCandidate) -> set[tuple[str, str]]:
        caps = self._caps.get(id(candidate))
        return caps if caps is not None else capabilities(candidate.entry)

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        if isinstance(candidate, InstalledCandidate):
            return []
        if isinstance(candidate, ProvidedBy):
            entry = candidate.provider.entry
            return [
                PackageRequirement(
                    entry.name, pin=(entry.version, entry.release, entry.arch, candidate.provider.repo.name)
                )
            ]
        if not self._with_deps:
            return []
        own = self._caps_of(candidate)
        deps: list[Requirement] = []
        for dep in candidate.entry.requires:
            if dep.kind == "package":
                if dep.name != candidate.name:
                    deps.append(PackageRequirement(dep.name, dep.version))
                continue
            key = (dep.kind, dep.name)
            if key in own or self._installed(Dependency(dep.kind, dep.name, "")):
                continue  # met by the package itself or by the root: nothing to choose
            names = {c.name for c in self._providers.get(key, ())}
            if len(names) == 1:
                # One package provides it (the usual case for a soname): require that package
                # directly, which keeps the resolver's identifiers to one per package.
                deps.append(PackageRequirement(names.pop(), capability=key))
            else:
                deps.append(CapabilityRequirement(dep.kind, dep.name))
        return deps


def _prefer(a: PackageCandidate, b: PackageCandidate) -> int:
    """Sort order of candidates: highest version first, then the earlier-listed repository."""
    newer = compare_evr((b.entry.version, b.entry.release), (a.entry.version, a.entry.release))
    return (
        newer or (a.repo_rank - b.repo_rank) or (a.entry.arch > b.entry.arch) - (a.entry.arch < b.entry.arch)
    )


# --- requests ----------------------------------------------------------------------------------

_REQUEST = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._+-]*)(?::(?P<component>[A-Za-z0-9_-]+))?(?:=(?P<version>\S+))?$"
)
_CAPABILITY = re.compile(r"^(?P<kind>[a-z]+)\((?P<name>\S+)\)$")


@dataclass(frozen=True)
class Request:
    """One install request: ``NAME[:component][=VERSION]`` or a capability ``soname(libfoo.so.1)``."""

    text: str
    requirement: Requirement
    component: str | None = None


def parse_request(text: str) -> Request:
    cap = _CAPABILITY.match(text)
    if cap:
        kind = cap.group("kind")
        if kind not in DEPENDENCY_KINDS:
            raise InputError(
                f"unknown requirement kind {kind!r} in {text!r}",
                hint=f"use one of {', '.join(DEPENDENCY_KINDS)}",
            )
        if kind == "package":
            return Request(text, PackageRequirement(cap.group("name"), explicit=True))
        return Request(text, CapabilityRequirement(kind, cap.group("name")))
    match = _REQUEST.match(text)
    if not match:
        raise InputError(
            f"invalid package request {text!r}",
            hint="write NAME, NAME:COMPONENT, NAME=VERSION or NAME=VERSION-RELEASE",
        )
    version = match.group("version") or ""
    return Request(
        text,
        PackageRequirement(match.group("name"), f"= {version}" if version else "", explicit=True),
        match.group("component"),
    )


# --- the resolution ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """The chosen packages, dependencies before their dependents."""

    chosen: tuple[PackageCandidate, ...]


def load_candidates(root: Path, repos: Sequence[Repo], keys: Sequence[PublicKey]) -> list[PackageCandidate]:
    candidates = []
    for rank, repo in enumerate(repos):
        index = load_index(root, repo, keys)
        candidates.extend(PackageCandidate(entry, repo, rank) for entry in index.entries)
    return candidates


def resolve_candidates(
    requests: Sequence[str],
    candidates: Sequence[PackageCandidate],
    installed: Any = None,
    *,
    with_deps: bool = True,
) -> Resolution:
    """Resolve REQUESTS against CANDIDATES (no I/O): the library core of ``resolve``. *with_deps*
    False chooses the requested packages and nothing they require."""
    parsed = [parse_request(text) for text in requests]
    provider = IndexProvider(candidates, installed_checker(installed), with_deps=with_deps)
    resolver: resolvelib.Resolver[Any, Any, str] = resolvelib.Resolver(provider, resolvelib.BaseReporter())
    try:
        result = resolver.resolve([r.requirement for r in parsed], max_rounds=10_000)
    except resolvelib.ResolutionImpossible as err:
        raise _explain(err, provider) from None
    except resolvelib.ResolutionTooDeep:
        raise ResolveError("dependency resolution did not finish", hint="report the request that caused it")
    return Resolution(tuple(_dependency_order(result)))


def _dependency_order(result: Any) -> list[PackageCandidate]:
    """The chosen packages in post-order over the dependency graph: dependencies first.

    Iterative, since a long dependency chain would exceed Python's recursion limit."""
    graph = result.graph
    seen: set[str | None] = set()
    order: list[PackageCandidate] = []
    roots: list[str | None] = [None, *sorted(result.mapping)]
    for start in roots:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(sorted(graph.iter_children(start), key=str)))]
        while stack:
            node, children = stack[-1]
            child = next(children, _DONE)
            if child is _DONE:
                stack.pop()
                cand = result.mapping.get(node) if node is not None else None
                if isinstance(cand, PackageCandidate):
                    order.append(cand)
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(sorted(graph.iter_children(child), key=str))))
    return order


_DONE = object()


def _explain(err: resolvelib.ResolutionImpossible, provider: IndexProvider) -> ResolveError:
    lines = []
    for cause in err.causes:
        req, parent = cause.requirement, cause.parent
        needed_by = "requested" if parent is None else f"needed by {_describe(parent)}"
        if isinstance(req, PackageRequirement) and req.name not in provider.package_names():
            lines.append(f"no package named {req.name!r} ({needed_by})")
        elif isinstance(req, PackageRequirement) and req.capability:
            lines.append(f"no usable version of {req.name} provides {req} ({needed_by})")
        elif isinstance(req, PackageRequirement) and req.constraint:
            lines.append(f"no version of {req.name} matches '{req.constraint.strip()}' ({needed_by})")
        elif isinstance(req, CapabilityRequirement):
            lines.append(f"nothing provides {req} ({needed_by})")
        else:
            lines.append(f"conflicting requirements on {req} ({needed_by})")
    unique = list(dict.fromkeys(lines))
    return ResolveError(
        "; ".join(unique),
        where="resolve",
        hint="check 'conary repo list', run 'conary repo sync', or add the repository that has it",
    )


def _describe(candidate: Candidate) -> str:
    if isinstance(candidate, PackageCandidate):
        return candidate.entry.nevra
    if isinstance(candidate, ProvidedBy):
        return f"{candidate.identifier} via {candidate.provider.entry.nevra}"
    return candidate.identifier


def installed_in_root(root: Path) -> Any:
    """What ROOT's database says is installed, or None when the root has no database yet."""
    path = layout(root).db_path
    if not path.exists():
        return None
    db = Database.open(path)
    try:
        return list(db.installed().values())
    finally:
        db.close()


def resolve(
    root: str | os.PathLike[str], requests: list[str], installed: Any = None, *, with_deps: bool = True
) -> list[Path]:
    """Choose packages for REQUESTS across ROOT's enabled repositories and fetch them.

    Returns the local paths of the chosen .ccs files, dependencies first, each verified against
    ROOT's trusted keys. INSTALLED says what the root already has (see ``installed_checker``;
    None reads ROOT's database); requirements it meets are not fetched again. *with_deps* False
    fetches the requested packages only.
    """
    return [path for _, path in resolve_and_fetch(root, requests, installed, with_deps=with_deps)]


def resolve_and_fetch(
    root: str | os.PathLike[str], requests: Iterable[str], installed: Any = None, *, with_deps: bool = True
) -> list[tuple[PackageCandidate, Path]]:
    root = Path(root)
    requests = list(requests)
    if not requests:
        return []
    for text in requests:
        parse_request(text)  # bad input is exit 2 before any network access
    repos = enabled_repos(root)
    if not repos:
        disabled = [r.name for r in list_repos(root)]
        hint = (
            f"enable one with 'conary repo enable NAME' (disabled: {', '.join(disabled)})"
            if disabled
            else "add one with 'conary repo add NAME DIR|URL'"
        )
        raise ResolveError("no enabled repositories", where=str(root), hint=hint)
    keys = trusted_keys(root)
    if not keys:
        raise ResolveError(
            "no trusted keys: nothing can be verified",
            where=str(root),
            hint="trust the repository's signing key with 'conary key add KEY.pub'",
        )
    if installed is None:
        installed = installed_in_root(root)
    resolution = resolve_candidates(
        requests, load_candidates(root, repos, keys), installed, with_deps=with_deps
    )
    return [(cand, fetch_package(root, cand.repo, cand.entry, keys)) for cand in resolution.chosen]


__all__ = [
    "IndexProvider",
    "Request",
    "ResolveError",
    "compare_versions",
    "describe_trust",
    "installed_checker",
    "parse_request",
    "resolve",
    "resolve_candidates",
    "version_matches",
]
