"""The steps of a changeset. Each one can run, be undone before the commit, or be finished after it.

All of them are idempotent in every direction, so recovery may repeat them after a crash at any
point, including a crash during recovery. New content is always staged beside its target as
``.conary-stage-<txid>-<name>`` and renamed over it; content that goes away is first kept beside it
as ``.conary-old-<txid>-<name>`` (a hard link for a replaced entry, a rename for a removed one),
which makes undoing exact (same bytes, mode, owner, symlink target) without copying anything.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

from conary.runtime.safefs import RootFS, parent_of

_NAME_MAX = 255


class Context(Protocol):
    fs: RootFS
    txid: str

    def mutated(self) -> None: ...

    def copy_object(self, sha256: str, fd: int) -> None: ...


def aside(path: str, kind: str, txid: str) -> str:
    """The sibling name used to stage (kind 'stage') or keep (kind 'old') PATH during TXID."""
    parent = parent_of(path)
    name = path.rsplit("/", 1)[-1]
    candidate = f".conary-{kind}-{txid}-{name}"
    if len(candidate.encode()) > _NAME_MAX:
        candidate = f".conary-{kind}-{txid}-{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return f"{parent}/{candidate}" if parent else candidate


@dataclass(frozen=True)
class MakeDir:
    kind: ClassVar[str] = "mkdir"
    path: str
    mode: int
    uid: int
    gid: int

    def execute(self, ctx: Context) -> None:
        if ctx.fs.lstat(self.path) is None:
            ctx.fs.mkdir(self.path, self.mode)
            ctx.mutated()
        ctx.fs.set_meta(self.path, self.mode, self.uid, self.gid, is_dir=True)
        ctx.mutated()

    def reverse(self, ctx: Context) -> None:
        if ctx.fs.rmdir(self.path):
            ctx.mutated()

    def finish(self, ctx: Context) -> None:
        return None

    def describe(self) -> str:
        return f"mkdir   {self.path} ({self.mode:04o})"


@dataclass(frozen=True)
class PutFile:
    """Install a file or symlink at DEST (PATH itself, or PATH.conarynew for a kept config file)."""

    kind: ClassVar[str] = "put"
    path: str
    dest: str
    type: str
    mode: int
    uid: int
    gid: int
    sha256: str
    target: str
    existed: bool
    reason: str  # new | replace | conarynew

    def stage_name(self, txid: str) -> str:
        return aside(self.dest, "stage", txid)

    def old_name(self, txid: str) -> str:
        return aside(self.dest, "old", txid)

    def stage(self, ctx: Context) -> None:
        stage = self.stage_name(ctx.txid)
        if self.type == "symlink":
            ctx.fs.symlink(self.target, stage)
            if os.geteuid() == 0:
                ctx.fs.lchown(stage, self.uid, self.gid)
        else:
            fd = ctx.fs.create(stage)
            try:
                ctx.copy_object(self.sha256, fd)
                if os.geteuid() == 0:
                    os.fchown(fd, self.uid, self.gid)
                os.fchmod(fd, self.mode)
            finally:
                os.close(fd)
        ctx.mutated()

    def execute(self, ctx: Context) -> None:
        # Runs once, right after stage(); recovery uses reverse() or finish(), which check the disk.
        if self.existed:
            ctx.fs.link(self.dest, self.old_name(ctx.txid))
            ctx.mutated()
        ctx.fs.rename(self.stage_name(ctx.txid), self.dest)
        ctx.mutated()

    def reverse(self, ctx: Context) -> None:
        stage, old = self.stage_name(ctx.txid), self.old_name(ctx.txid)
        if ctx.fs.lstat(old) is not None:
            ctx.fs.rename(old, self.dest)  # a no-op when both name one inode: then drop the link
            ctx.mutated()
            if ctx.fs.unlink(old):
                ctx.mutated()
        elif not self.existed and ctx.fs.unlink(self.dest):
            ctx.mutated()
        if ctx.fs.unlink(stage):
            ctx.mutated()

    def finish(self, ctx: Context) -> None:
        if self.existed and ctx.fs.unlink(self.old_name(ctx.txid)):
            ctx.mutated()

    def describe(self) -> str:
        what = {"new": "add", "replace": "replace", "conarynew": "config"}[self.reason]
        shown = self.dest if self.dest == self.path else f"{self.path} -> {self.dest} (kept local edit)"
        return f"{what:<7} {shown}"


@dataclass(frozen=True)
class RemoveFile:
    """Delete a file or symlink no package owns any more.

    Nothing happens before the commit (so there is nothing to undo); the entry is deleted after it,
    and recovery after the commit deletes what is left. Its content stays in the content store, so a
    rollback can bring it back.
    """

    kind: ClassVar[str] = "remove"
    path: str

    def execute(self, ctx: Context) -> None:
        return None

    def reverse(self, ctx: Context) -> None:
        return None

    def finish(self, ctx: Context) -> None:
        if ctx.fs.unlink(self.path):
            ctx.mutated()

    def describe(self) -> str:
        return f"remove  {self.path}"


@dataclass(frozen=True)
class SetMeta:
    """Change mode/owner of an entry whose content stays (directories, files with new modes)."""

    kind: ClassVar[str] = "meta"
    path: str
    is_dir: bool
    mode: int
    uid: int
    gid: int
    old_mode: int
    old_uid: int
    old_gid: int

    def execute(self, ctx: Context) -> None:
        ctx.fs.set_meta(self.path, self.mode, self.uid, self.gid, is_dir=self.is_dir)
        ctx.mutated()

    def reverse(self, ctx: Context) -> None:
        if ctx.fs.lstat(self.path) is not None:
            ctx.fs.set_meta(self.path, self.old_mode, self.old_uid, self.old_gid, is_dir=self.is_dir)
            ctx.mutated()

    def finish(self, ctx: Context) -> None:
        return None

    def describe(self) -> str:
        return f"chmod   {self.path} ({self.old_mode:04o} -> {self.mode:04o}, {self.uid}:{self.gid})"


@dataclass(frozen=True)
class RemoveDir:
    """Drop a directory no package owns any more, after the commit and only if it is empty."""

    kind: ClassVar[str] = "rmdir"
    path: str

    def execute(self, ctx: Context) -> None:
        return None

    def reverse(self, ctx: Context) -> None:
        return None

    def finish(self, ctx: Context) -> None:
        if ctx.fs.rmdir(self.path):
            ctx.mutated()

    def describe(self) -> str:
        return f"rmdir   {self.path} (if empty)"


Action = MakeDir | PutFile | RemoveFile | SetMeta | RemoveDir
_KINDS: dict[str, type[Any]] = {cls.kind: cls for cls in (MakeDir, PutFile, RemoveFile, SetMeta, RemoveDir)}


_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in _KINDS.values()
}


def action_to_json(action: Action) -> dict[str, Any]:
    return {"kind": action.kind, **{name: getattr(action, name) for name in _FIELDS[type(action)]}}


def action_from_json(data: dict[str, Any]) -> Action:
    values = dict(data)
    cls = _KINDS[values.pop("kind")]
    return cls(**values)  # type: ignore[no-any-return]
