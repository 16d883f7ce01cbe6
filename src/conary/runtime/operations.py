"""The runtime's operations: install, remove, update and roll back, each one changeset.

Each operation computes the target state (package -> components), imports new content into the
store, plans the difference and hands the plan to the transaction engine, or returns it untouched
under ``dry_run``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from conary.ccs import CcsError, CcsVerifyError, Dependency, FileEntry, PublicKey, open_package
from conary.ccs.limits import MAX_OBJECT_BYTES
from conary.errors import InputError
from conary.runtime.errors import DependencyError, RuntimeStateError
from conary.runtime.keys import trusted_keys as root_trusted_keys
from conary.runtime.model import FileMap, Selected, components_for
from conary.runtime.plan import Plan, make_plan
from conary.runtime.scriptlets import check_mode
from conary.runtime.session import RootSession, init_root, open_root
from conary.runtime.transaction import TxResult

_BINARY_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin", "usr/local/bin")


@dataclass(frozen=True)
class Outcome:
    """What a changeset did (or, under dry_run, would do)."""

    plan: Plan
    state: int | None  # the new state number; None for a dry run or an empty plan
    dry_run: bool
    triggers: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    recovered: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "state": self.state,
            "dry_run": self.dry_run,
            "triggers": list(self.triggers),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class PackageSource:
    """A package to install: a .ccs file and the components wanted (None: defaults)."""

    path: Path
    components: tuple[str, ...] | None = None


# --- loading packages ----------------------------------------------------------------------------


def _trusted(root: Path, trusted_keys: Sequence[PublicKey] | None) -> list[PublicKey]:
    if trusted_keys is not None:
        return list(trusted_keys)
    return root_trusted_keys(root)


def _open(path: Path, keys: list[PublicKey], allow_untrusted: bool) -> Any:
    if not path.is_file():
        raise InputError("package file not found", where=str(path))
    if not keys and not allow_untrusted:
        raise RuntimeStateError(
            "no trusted keys: the package's signer cannot be checked",
            where=str(path),
            hint="trust its key with 'conary key add KEY.pub', or pass --allow-untrusted",
        )
    try:
        return open_package(path, trusted_keys=None if allow_untrusted else keys)
    except CcsError as err:
        raise type(err)(err.what, where=err.where or str(path), hint=err.hint)


def _content_sources(loaded: Mapping[str, tuple[Any, Selected]]) -> tuple[dict[str, Any], dict[str, int]]:
    """sha256 -> a callable yielding that content, for every selected file of the loaded packages;
    and sha256 -> its compressed size (what storing it adds to the content store)."""
    sources: dict[str, Any] = {}
    stored: dict[str, int] = {}
    for pkg, sel in loaded.values():
        for entry in sel.entries():
            if entry.type == "file" and entry.sha256 not in sources:
                sources[entry.sha256] = functools.partial(_frames, pkg, entry)
                stored[entry.sha256] = sum(pkg.compressed_size(c) for c in entry.chunks)
    return sources, stored


_local = threading.local()


def _frames(pkg: Any, entry: FileEntry) -> Iterator[tuple[bytes, bytes]]:
    """(compressed frame, content) per chunk, the content decompressed from that very frame and
    checked against the chunk's id (the package could change on disk after it was verified)."""
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:  # one per staging thread: a decompression context is not free to make
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    for chunk in entry.chunks:
        frame = pkg.compressed_object(chunk)
        try:
            data = decompressor.decompress(frame, max_output_size=MAX_OBJECT_BYTES)
        except zstandard.ZstdError as err:
            raise CcsVerifyError(f"object is corrupt: {err}", where=f"{pkg.path}: object {chunk}")
        if hashlib.sha256(data).hexdigest() != chunk:
            raise CcsVerifyError(
                "object changed since the package was verified", where=f"{pkg.path}: {chunk}"
            )
        yield frame, data


def _load(
    session: RootSession,
    sources: Sequence[PackageSource],
    current: Mapping[str, Selected],
    keys: list[PublicKey],
    allow_untrusted: bool,
    wanted: Mapping[str, tuple[str, ...]] | None = None,
    *,
    dry_run: bool = False,
) -> dict[str, tuple[Any, Selected]]:
    """Verify every package (all of them before any is used) and record its manifest (under DRY_RUN
    new manifests get placeholder ids instead, so nothing is written)."""
    opened = [(_open(src.path, keys, allow_untrusted), src) for src in sources]
    out: dict[str, tuple[Any, Selected]] = {}
    for pkg, src in opened:
        manifest = pkg.manifest
        if manifest.name in out:
            raise InputError(f"two packages named {manifest.name} in one request", where=str(src.path))
        old = current.get(manifest.name)
        names = {c.name for c in manifest.components}
        requested = src.components if src.components is not None else (wanted or {}).get(manifest.name)
        if requested is not None:
            keep = [c for c in (old.components if old else ()) if c in names]
            components = components_for(manifest, [*keep, *requested])
        elif old is not None and any(c in names for c in old.components):
            components = components_for(manifest, [c for c in old.components if c in names])
        else:
            components = components_for(manifest, None)
        if dry_run:
            manifest_id = session.db.find_manifest(manifest) or -1 - len(out)
        else:
            manifest_id = session.db.store_manifest(
                manifest, getattr(pkg, "signer_key_id", "") or "", getattr(pkg, "manifest_bytes", None)
            )
        out[manifest.name] = (pkg, Selected(manifest_id, manifest, components))
    return out


# --- dependencies --------------------------------------------------------------------------------


def _unmet(
    packages: Mapping[str, Selected], files: FileMap, root: Path, managed: FileMap
) -> set[tuple[str, Dependency]]:
    """Requirements nothing satisfies: not a provide, not a path of FILES, not an unmanaged path on disk."""
    provides: set[tuple[str, str]] = set()
    for sel in packages.values():
        provides.add(("package", sel.name))
        provides.update((d.kind, d.name) for d in sel.manifest.provides)

    def met(dep: Dependency) -> bool:
        if (dep.kind, dep.name) in provides:
            return True
        if dep.kind in ("file", "interpreter", "binary"):
            path = dep.name.lstrip("/")
            candidates = [path]
            if dep.kind == "binary" and "/" not in path:
                candidates = [f"{d}/{path}" for d in _BINARY_DIRS]
            return any(c in files or (c not in managed and os.path.lexists(root / c)) for c in candidates)
        return False

    return {(sel.name, dep) for sel in packages.values() for dep in sel.manifest.requires if not met(dep)}


def _check_dependencies(
    session: RootSession,
    before: Mapping[str, Selected],
    after: Mapping[str, Selected],
    current: FileMap,
    target: FileMap,
) -> None:
    broken = _unmet(after, target, session.root, current) - _unmet(before, current, session.root, current)
    if broken:
        shown = "; ".join(f"{name} needs {dep}" for name, dep in sorted(broken, key=str)[:10])
        raise DependencyError(
            f"unmet requirements: {shown}" + (f" (and {len(broken) - 10} more)" if len(broken) > 10 else ""),
            where=str(session.root),
            hint="install the providing packages in the same command, or pass --nodeps",
        )


# --- running a changeset -------------------------------------------------------------------------


def _apply(
    session: RootSession,
    operation: str,
    after: Mapping[str, Selected],
    *,
    dry_run: bool,
    sandbox: str,
    check_deps: bool,
    summary: str | None = None,
    loaded: Mapping[str, tuple[Any, Selected]] | None = None,
) -> Outcome:
    check_mode(sandbox)
    before = session.db.installed()
    current = session.db.current_files()
    after = dict(sorted(after.items()))
    plan = make_plan(session.fs, operation, session.db.current_state(), current, before, after, summary)
    if check_deps:
        _check_dependencies(session, before, after, current, plan.target)
    recovered = tuple(session.recovered)
    if dry_run or plan.is_empty:
        return Outcome(plan, None, dry_run, recovered=recovered)
    sources, stored_bytes = _content_sources(loaded or {})
    result: TxResult = session.engine.run(plan, sandbox, sources, stored_bytes)
    return Outcome(plan, result.state, False, result.triggers, result.warnings, recovered)


def _with_root(root: str | os.PathLike[str], create: bool) -> Any:
    if create:
        init_root(root)
    return open_root(root)


def install_packages(
    root: str | os.PathLike[str],
    packages: Sequence[str | os.PathLike[str] | PackageSource],
    *,
    trusted_keys: Sequence[PublicKey] | None = None,
    allow_untrusted: bool = False,
    sandbox: str = "auto",
    check_deps: bool = True,
    dry_run: bool = False,
    init: bool = True,
) -> Outcome:
    """Install (or upgrade to) the given .ccs files into ROOT in one changeset.

    TRUSTED_KEYS defaults to the keys ROOT trusts (``conary key``); each package must be signed by
    one of them unless ALLOW_UNTRUSTED. With INIT the root's state is created when missing.
    """
    sources = [p if isinstance(p, PackageSource) else PackageSource(Path(p)) for p in packages]
    with _with_root(root, init) as session:
        keys = _trusted(session.root, trusted_keys)
        before = session.db.installed()
        loaded = _load(session, sources, before, keys, allow_untrusted, dry_run=dry_run)
        new = {name: sel for name, (_, sel) in loaded.items()}
        return _apply(
            session,
            "install",
            {**before, **new},
            dry_run=dry_run,
            sandbox=sandbox,
            check_deps=check_deps,
            loaded=loaded,
        )


def install(
    root: str | os.PathLike[str],
    items: Sequence[str],
    *,
    trusted_keys: Sequence[PublicKey] | None = None,
    allow_untrusted: bool = False,
    sandbox: str = "auto",
    check_deps: bool = True,
    dry_run: bool = False,
    operation: str = "install",
) -> Outcome:
    """Install ITEMS: paths of .ccs files, or requests NAME[:component][=VERSION] resolved from repos."""
    with open_root(root) as session:
        sources, wanted = _sources(session, items, with_deps=check_deps)
        keys = _trusted(session.root, trusted_keys)
        before = session.db.installed()
        loaded = _load(session, sources, before, keys, allow_untrusted, wanted, dry_run=dry_run)
        new = {name: sel for name, (_, sel) in loaded.items()}
        if operation == "update":
            new = {n: s for n, s in new.items() if _is_change(before.get(n), s)}
            _refuse_downgrades(before, new)
        return _apply(
            session,
            operation,
            {**before, **new},
            dry_run=dry_run,
            sandbox=sandbox,
            check_deps=check_deps,
            loaded=loaded,
        )


def _refuse_downgrades(before: Mapping[str, Selected], new: Mapping[str, Selected]) -> None:
    """update moves forward only; installing an older version is what install (or rollback) is for."""
    # on use: the resolver brings resolvelib, which remove and installs of .ccs files never need
    from conary.runtime.resolver import compare_evr

    for name, sel in new.items():
        old = before.get(name)
        if old is not None and compare_evr((sel.version, sel.release), (old.version, old.release)) < 0:
            raise InputError(
                f"{sel.manifest.nevra} is older than the installed {old.manifest.nevra}",
                hint="use 'conary install' to downgrade, or 'conary system state rollback N'",
            )


def _is_change(old: Selected | None, new: Selected) -> bool:
    return old is None or old.manifest_id != new.manifest_id or old.components != new.components


def _is_package_path(item: str) -> bool:
    return item.endswith(".ccs") or os.sep in item or Path(item).is_file()


def _sources(
    session: RootSession, items: Sequence[str], *, with_deps: bool = True
) -> tuple[list[PackageSource], dict[str, tuple[str, ...]]]:
    """.ccs paths as they are; requests resolved from the repositories (with what they require,
    unless *with_deps* is False, as under --nodeps). Also returns the components the requests name,
    per package name."""
    paths = [PackageSource(Path(i)) for i in items if _is_package_path(i)]
    requests = [i for i in items if not _is_package_path(i)]
    if not requests:
        return paths, {}
    # on use: resolvelib and the repository client cost every start-up ~100 ms; remove and
    # installs of .ccs files never resolve
    from conary.runtime.resolver import parse_request, resolve

    installed = [s.manifest for s in session.db.installed().values()]
    wanted: dict[str, tuple[str, ...]] = {}
    for text in requests:
        req = parse_request(text)
        name = getattr(req.requirement, "name", None)
        if name and req.component:
            wanted[name] = (*wanted.get(name, ()), req.component)
    resolved = resolve(session.root, requests, installed, with_deps=with_deps)
    return [*paths, *(PackageSource(Path(p)) for p in resolved)], wanted


def update(root: str | os.PathLike[str], items: Sequence[str], **kwargs: Any) -> Outcome:
    """Update ITEMS (.ccs paths or names) — or every installed package when ITEMS is empty."""
    if not items:
        with open_root(root) as session:
            items = list(session.db.installed())
        if not items:
            with open_root(root) as session:
                plan = make_plan(
                    session.fs,
                    "update",
                    session.db.current_state(),
                    session.db.current_files(),
                    {},
                    {},
                    "update nothing",
                )
                return Outcome(plan, None, bool(kwargs.get("dry_run")))
    return install(root, items, operation="update", **kwargs)


def remove(
    root: str | os.PathLike[str],
    names: Sequence[str],
    *,
    sandbox: str = "auto",
    check_deps: bool = True,
    dry_run: bool = False,
) -> Outcome:
    """Remove packages (NAME) or single components (NAME:component)."""
    with open_root(root) as session:
        after = dict(session.db.installed())
        for text in names:
            name, _, component = text.partition(":")
            sel = after.get(name)
            if sel is None:
                raise InputError(
                    f"package {name} is not installed", where=str(session.root), hint="see 'conary list'"
                )
            if component:
                if component not in sel.components:
                    raise InputError(
                        f"component {component} of {name} is not installed",
                        hint=f"installed: {', '.join(sel.components)}",
                    )
                rest = tuple(c for c in sel.components if c != component)
                if rest:
                    after[name] = Selected(sel.manifest_id, sel.manifest, rest)
                    continue
            del after[name]
        return _apply(session, "remove", after, dry_run=dry_run, sandbox=sandbox, check_deps=check_deps)


def rollback(
    root: str | os.PathLike[str],
    number: int,
    *,
    sandbox: str = "auto",
    dry_run: bool = False,
) -> Outcome:
    """Return ROOT to the exact tree of state NUMBER, as a new changeset (and a new state)."""
    with open_root(root) as session:
        if not session.db.has_state(number):
            raise InputError(
                f"no state {number}", where=str(session.root), hint="see 'conary system state list'"
            )
        after = session.db.packages_of(number)
        return _apply(
            session,
            "rollback",
            after,
            dry_run=dry_run,
            sandbox=sandbox,
            check_deps=False,
            summary=f"rollback to state {number}",
        )
