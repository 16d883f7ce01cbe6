"""Turn "these packages, these components" into the list of actions that gets the root there.

The plan compares the current tree (from the database), the target tree (built from manifests) and
what is really on disk, so the plan is the same data whether it is printed (--dry-run), journaled
or run.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conary.runtime.actions import Action, MakeDir, PutFile, RemoveDir, RemoveFile, SetMeta
from conary.runtime.errors import ConflictError, UnsafePathError
from conary.runtime.model import FileMap, Node, Selected, build_filemap
from conary.runtime.safefs import RootFS, parent_of

CONFIG_NEW_SUFFIX = ".conarynew"


@dataclass(frozen=True)
class PackageChange:
    name: str
    old: str | None  # label (nevra[components]) before, None when newly installed
    new: str | None  # label after, None when removed

    @property
    def verb(self) -> str:
        if self.old is None:
            return "install"
        if self.new is None:
            return "remove"
        return "update"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.verb, "from": self.old, "to": self.new}


@dataclass(frozen=True)
class Plan:
    operation: str  # install | remove | update | rollback | ...
    summary: str
    before_state: int
    packages: tuple[Selected, ...]  # the target state
    changes: tuple[PackageChange, ...]
    actions: tuple[Action, ...]
    target: FileMap = field(compare=False, repr=False)
    scriptlets_pre: tuple[tuple[str, str, str], ...] = ()  # (package, kind, script)
    scriptlets_post: tuple[tuple[str, str, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.actions and not self.changes

    def changed_paths(self) -> set[str]:
        return {a.path for a in self.actions if not isinstance(a, RemoveDir | MakeDir)} | {
            a.path for a in self.actions if isinstance(a, MakeDir | RemoveDir)
        }

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for action in self.actions:
            key = action.kind if not isinstance(action, PutFile) else action.reason
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "summary": self.summary,
            "from_state": self.before_state,
            "packages": [c.to_json() for c in self.changes],
            "actions": [a.describe() for a in self.actions],
            "counts": self.counts(),
        }

    def render(self) -> list[str]:
        lines = [f"plan: {self.summary}"]
        lines += [
            f"  {c.verb:<8} {c.new or c.old}" + (f" (was {c.old})" if c.verb == "update" else "")
            for c in self.changes
        ]
        lines += [f"    {a.describe()}" for a in self.actions]
        counts = ", ".join(f"{v} {k}" for k, v in self.counts().items()) or "no file changes"
        lines.append(f"  {len(self.actions)} actions: {counts}")
        return lines


def hash_on_disk(fs: RootFS, path: str) -> str | None:
    try:
        fd = fs.open_read(path)
    except (OSError, UnsafePathError):
        return None
    digest = hashlib.sha256()
    try:
        while data := os.read(fd, 1 << 20):
            digest.update(data)
    finally:
        os.close(fd)
    return digest.hexdigest()


def disk_matches(fs: RootFS, path: str, st: os.stat_result, node: Node) -> bool:
    if node.type == "symlink":
        return stat.S_ISLNK(st.st_mode) and fs.readlink(path) == node.target
    if node.type == "file":
        return stat.S_ISREG(st.st_mode) and st.st_size == node.size and hash_on_disk(fs, path) == node.sha256
    return stat.S_ISDIR(st.st_mode)


def _put(path: str, node: Node, *, existed: bool, reason: str, dest: str | None = None) -> PutFile:
    return PutFile(
        path,
        dest or path,
        node.type,
        node.mode,
        node.uid,
        node.gid,
        node.sha256,
        node.target,
        existed,
        reason,
    )


def _kind_of(st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "file" if stat.S_ISREG(st.st_mode) else "special file"


class Planner:
    def __init__(self, fs: RootFS, current: FileMap) -> None:
        self.fs = fs
        self.current = current

    def _check_parents(self, path: str, made: set[str]) -> None:
        """Every parent must be a real directory on disk (or one this plan creates)."""
        parent = parent_of(path)
        while parent and parent not in made:
            st = self.fs.lstat(parent)
            if st is None:
                parent = parent_of(parent)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePathError(
                    f"{parent} in the root is a {_kind_of(st)}, not a directory; "
                    "refusing to write beneath it",
                    where=path,
                    hint="remove it from the root or fix the package",
                )
            break

    def diff(self, target: FileMap) -> list[Action]:
        mkdirs: list[Action] = []
        puts: list[Action] = []
        removes: list[Action] = []
        metas: list[Action] = []
        rmdirs: list[Action] = []
        made: set[str] = set()
        for path in sorted(self.current.paths() | target.paths()):
            old = self.current.get(path)
            new = target.get(path)
            if new is not None:
                self._check_parents(path, made)
            # Nothing can be inside a directory this plan creates (it is not there yet).
            st = None if parent_of(path) in made else self.fs.lstat(path)
            if new is None:
                assert old is not None
                if old.node.type == "dir":
                    rmdirs.append(RemoveDir(path))
                elif st is None or stat.S_ISDIR(st.st_mode):
                    continue
                elif old.node.config and not disk_matches(self.fs, path, st, old.node):
                    continue  # a locally edited config file stays, unowned
                else:
                    removes.append(RemoveFile(path))
                continue
            node = new.node
            if node.type == "dir":
                if st is None:
                    mkdirs.append(MakeDir(path, node.mode, node.uid, node.gid))
                    made.add(path)
                elif not stat.S_ISDIR(st.st_mode):
                    raise ConflictError(
                        f"{', '.join(new.owners)} needs a directory here, but the root has a {_kind_of(st)}",
                        where=path,
                        hint="type changes between directories and files are not supported; remove it first",
                    )
                else:
                    metas.extend(self._meta(path, st, node, is_dir=True))
                continue
            if st is None:
                puts.append(_put(path, node, existed=False, reason="new"))
                continue
            if stat.S_ISDIR(st.st_mode):
                raise ConflictError(
                    f"{', '.join(new.owners)} installs a {node.type} where the root has a directory",
                    where=path,
                    hint="type changes between directories and files are not supported; remove it first",
                )
            if old is None or old.node.type == "dir":
                if disk_matches(self.fs, path, st, node):
                    metas.extend(self._meta(path, st, node, is_dir=False))
                elif node.config:
                    puts.append(self._conarynew(path, node))
                else:
                    raise ConflictError(
                        f"{path} exists in the root but no package owns it ({', '.join(new.owners)} "
                        "would overwrite it)",
                        where=path,
                        hint="move the file away, then retry",
                    )
                continue
            if old.node.same_content(node):
                if not old.node.same(node):
                    metas.extend(self._meta(path, st, node, is_dir=False))
                continue
            if node.config and not disk_matches(self.fs, path, st, old.node):
                if not disk_matches(self.fs, path, st, node):
                    puts.append(self._conarynew(path, node))
                continue
            puts.append(_put(path, node, existed=True, reason="replace"))
        rmdirs.sort(key=lambda a: a.path.count("/"), reverse=True)
        return [*mkdirs, *puts, *removes, *metas, *rmdirs]

    def _conarynew(self, path: str, node: Node) -> PutFile:
        dest = path + CONFIG_NEW_SUFFIX
        st = self.fs.lstat(dest)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ConflictError("a directory is in the way of the new config file", where=dest)
        return _put(path, node, existed=st is not None, reason="conarynew", dest=dest)

    def _meta(self, path: str, st: os.stat_result, node: Node, *, is_dir: bool) -> list[Action]:
        if node.type == "symlink":
            return []
        mode = stat.S_IMODE(st.st_mode)
        uid, gid = st.st_uid, st.st_gid
        if os.geteuid() != 0:
            uid, gid = node.uid, node.gid  # ownership cannot be changed; only compare modes
            if mode == node.mode:
                return []
        elif (mode, uid, gid) == (node.mode, node.uid, node.gid):
            return []
        return [SetMeta(path, is_dir, node.mode, node.uid, node.gid, mode, uid, gid)]


def scriptlet_calls(
    before: Mapping[str, Selected], after: Mapping[str, Selected]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(pre, post) scriptlet calls: new or changed packages run their install scriptlets, packages that
    go away their remove scriptlets."""
    pre: list[tuple[str, str, str]] = []
    post: list[tuple[str, str, str]] = []
    for name, old in before.items():
        if name not in after:
            scripts = old.manifest.scriptlets
            if scripts.get("pre_remove"):
                pre.append((name, "pre_remove", scripts["pre_remove"]))
            if scripts.get("post_remove"):
                post.append((name, "post_remove", scripts["post_remove"]))
    for name, new in after.items():
        old = before.get(name)
        if old is not None and old.manifest_id == new.manifest_id:
            continue
        scripts = new.manifest.scriptlets
        if scripts.get("pre_install"):
            pre.append((name, "pre_install", scripts["pre_install"]))
        if scripts.get("post_install"):
            post.append((name, "post_install", scripts["post_install"]))
    return pre, post


def make_plan(
    fs: RootFS,
    operation: str,
    before_state: int,
    current: FileMap,
    before: Mapping[str, Selected],
    after: Mapping[str, Selected],
    summary: str | None = None,
) -> Plan:
    target = build_filemap(after.values())
    actions = Planner(fs, current).diff(target)
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if (
            old is not None
            and new is not None
            and (old.manifest_id, old.components)
            == (
                new.manifest_id,
                new.components,
            )
        ):
            continue
        changes.append(PackageChange(name, old.label if old else None, new.label if new else None))
    pre, post = scriptlet_calls(before, after)
    if summary is None:
        summary = ", ".join(f"{c.verb} {c.name}" for c in changes) or f"{operation}: no package changes"
    return Plan(
        operation,
        summary,
        before_state,
        tuple(after.values()),
        tuple(changes),
        tuple(actions),
        target,
        tuple(pre),
        tuple(post),
    )
