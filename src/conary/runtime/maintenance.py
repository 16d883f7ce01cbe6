"""Checking and repairing a root: verify, restore, garbage collection, explicit recovery."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.errors import InputError
from conary.fsutil import fsync_dir
from conary.runtime.cas import Location
from conary.runtime.errors import MissingContentError
from conary.runtime.model import Node
from conary.runtime.plan import hash_on_disk
from conary.runtime.session import RootSession, open_root


@dataclass(frozen=True)
class Problem:
    path: str
    packages: tuple[str, ...]
    what: str
    repairable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "packages": list(self.packages), "problem": self.what}


def _check_entry(
    session: RootSession, path: str, node: Node, stored: dict[str, Location], hashes: dict[str, str | None]
) -> str | None:
    try:
        st = session.fs.lstat(path)
    except OSError as err:
        return f"cannot inspect: {err.strerror}"
    if st is None:
        return "missing"
    kinds = {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "symlink": stat.S_ISLNK}
    if not kinds[node.type](st.st_mode):
        return f"is no longer a {node.type}"
    if node.type == "symlink":
        target = session.fs.readlink(path)
        return None if target == node.target else f"symlink points to {target!r}, not {node.target!r}"
    if stat.S_IMODE(st.st_mode) != node.mode:
        return f"mode {stat.S_IMODE(st.st_mode):04o}, expected {node.mode:04o}"
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (node.uid, node.gid):
        return f"owner {st.st_uid}:{st.st_gid}, expected {node.uid}:{node.gid}"
    if node.type == "file":
        if node.sha256 not in hashes:
            location = stored.get(node.sha256)
            hashes[node.sha256] = (
                session.cas.check(node.sha256, location) if location else "missing from the content store"
            )
        if hashes[node.sha256] is not None:
            return str(hashes[node.sha256])
        if st.st_size != node.size or hash_on_disk(session.fs, path) != node.sha256:
            return "content differs" + (" (config file: local edits are kept)" if node.config else "")
    return None


def _problems(session: RootSession, names: list[str]) -> list[Problem]:
    installed = session.db.installed()
    for name in names:
        if name not in installed:
            raise InputError(f"package {name} is not installed", hint="see 'conary list'")
    out = [
        Problem(f"(database: {name})", (name,), what, repairable=False)
        for name, what in session.db.damaged_manifests(
            sel.manifest_id for name, sel in installed.items() if not names or name in names
        )
    ]
    files = session.db.current_files()
    selected = {
        path: owned for path, owned in files.entries.items() if not names or set(owned.owners) & set(names)
    }
    stored = session.cas.locate(o.node.sha256 for o in selected.values() if o.node.type == "file")
    hashes: dict[str, str | None] = {}
    for path, owned in selected.items():
        what = _check_entry(session, path, owned.node, stored, hashes)
        if what is None:
            continue
        if owned.node.config and what.startswith("content differs"):
            continue  # a locally edited config file is expected, not a fault
        out.append(Problem(path, owned.owners, what, repairable="content store" not in what))
    return out


def verify(root: str | os.PathLike[str], names: list[str] | None = None) -> list[Problem]:
    """Compare every installed entry (of NAMES, or all) with the database and the content store."""
    with open_root(root) as session:
        return _problems(session, names or [])


def restore(
    root: str | os.PathLike[str], names: list[str] | None = None, *, dry_run: bool = False
) -> list[Problem]:
    """Put back entries of NAMES (or all) that differ from their record, from the content store.

    Each file is rewritten atomically (staged, fsynced, renamed). Locally edited config files stay.
    Returns the problems found (and, unless DRY_RUN, repaired).
    """
    with open_root(root) as session:
        problems = _problems(session, names or [])
        broken = [p for p in problems if not p.repairable]
        if broken:
            raise MissingContentError(
                f"{broken[0].path}: {broken[0].what}",
                where=str(session.root),
                hint="reinstall the package from its .ccs file",
            )
        if dry_run:
            return problems
        files = session.db.current_files()
        for problem in problems:
            _repair(session, problem.path, files.entries[problem.path].node)
        session.fs.syncfs()
        return problems


def _repair(session: RootSession, path: str, node: Node) -> None:
    fs = session.fs
    st = fs.lstat(path)
    if node.type == "dir":
        if st is None:
            fs.mkdir(path, node.mode)
        fs.set_meta(path, node.mode, node.uid, node.gid, is_dir=True)
        return
    tmp = path.rsplit("/", 1)
    tmp_path = (tmp[0] + "/" if len(tmp) == 2 else "") + f".conary-restore-{os.getpid()}-{tmp[-1]}"[:200]
    fs.unlink(tmp_path)
    if node.type == "symlink":
        fs.symlink(node.target, tmp_path)
        if os.geteuid() == 0:
            fs.lchown(tmp_path, node.uid, node.gid)
    else:
        fd = fs.create(tmp_path)
        try:
            session.cas.copy_into(node.sha256, fd)
            if os.geteuid() == 0:
                os.fchown(fd, node.uid, node.gid)
            os.fchmod(fd, node.mode)
            os.fsync(fd)
        finally:
            os.close(fd)
    if st is not None and stat.S_ISDIR(st.st_mode):
        fs.unlink(tmp_path)
        raise MissingContentError("a directory is in the way; remove it by hand", where=path)
    fs.rename(tmp_path, path)


@dataclass(frozen=True)
class GcReport:
    objects: int
    bytes: int
    states_dropped: tuple[int, ...]
    manifests: int
    temp_files: int
    dry_run: bool
    cached_packages: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "objects_removed": self.objects,
            "bytes_freed": self.bytes,
            "states_dropped": list(self.states_dropped),
            "manifests_removed": self.manifests,
            "temp_files_removed": self.temp_files,
            "cached_packages_removed": self.cached_packages,
            "dry_run": self.dry_run,
        }


def gc(root: str | os.PathLike[str], *, keep_states: int | None = None, dry_run: bool = False) -> GcReport:
    """Delete what no retained state needs: content objects, manifests, temporary leftovers.

    Every state is retained unless KEEP_STATES is given: then only the newest KEEP_STATES states
    (always including the current one) stay, and the rest are forgotten first.
    """
    with open_root(root) as session:
        dropped: list[int] = []
        if keep_states is not None:
            if keep_states < 1:
                raise InputError("--keep-states must be at least 1")
            numbers = session.db.state_numbers()
            dropped = numbers[: max(0, len(numbers) - keep_states)]
            if not dry_run:
                session.db.prune_states(keep_states)
        manifests = session.db.unreferenced_manifests()
        if not dry_run:
            session.db.drop_unreferenced_manifests()
        # Leftovers first: a pack no index row names is not the store's (and repacking adds packs).
        temps = [*session.cas.leftovers(), *session.journal.leftovers()]
        size = 0
        for tmp in temps:
            size += tmp.lstat().st_size
            if not dry_run:
                tmp.unlink()
        objects, freed = session.cas.collect(session.db.referenced_objects(), dry_run=dry_run)
        size += freed
        # Downloaded package files: no state needs them (their content is in the store), and an
        # install fetches them again. The root lock keeps an install's download from going here.
        cached = _cached_packages(session)
        for path in cached:
            size += path.lstat().st_size
            if not dry_run:
                path.unlink()
        if cached and not dry_run:
            fsync_dir(session.layout.package_cache)
        return GcReport(objects, size, tuple(dropped), manifests, len(temps), dry_run, len(cached))


def _cached_packages(session: RootSession) -> list[Path]:
    cache = session.layout.package_cache
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir() if p.is_file() and not p.is_symlink())


def recover(root: str | os.PathLike[str], *, dry_run: bool = False) -> list[str]:
    """Open ROOT (which finishes or undoes an interrupted transaction) and say what was done
    (under DRY_RUN: what would be done)."""
    with open_root(root, recover=not dry_run) as session:
        return list(session.recovered)
