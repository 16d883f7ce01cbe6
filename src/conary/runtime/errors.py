"""Errors of the installer runtime core (database, transactions, states)."""

from __future__ import annotations

import errno

from conary.errors import ConaryError, InputError


class RuntimeStateError(ConaryError):
    """The root's database or journal is missing, newer than this software, or inconsistent."""


class ConflictError(ConaryError):
    """A changeset cannot be applied: two packages claim one path, or the disk disagrees."""


class UnsafePathError(ConaryError):
    """A path would leave the root or pass through a symlink or a non-directory."""


class MissingContentError(ConaryError):
    """The content store lacks an object a changeset, restore or rollback needs."""


class DependencyError(ConaryError):
    """Installing or removing would leave a requirement without a provider."""


class ChangesetAbortedError(ConaryError):
    """The filesystem refused a write (a full disk, a read-only mount); the changeset was reversed."""

    @classmethod
    def from_os_error(cls, err: OSError, operation: str, root: str) -> ChangesetAbortedError:
        on = f" on {err.filename}" if err.filename else ""
        hint = "fix the cause, then run the command again"
        if err.errno == errno.ENOSPC:
            hint = f"free space on the filesystem holding {root}, then run the command again"
        elif err.errno == errno.EROFS:
            hint = f"mount {root} read-write, then run the command again"
        return cls(
            f"{operation} failed: {err.strerror or err}{on}; the changeset was rolled back, "
            "the root is unchanged",
            where=root,
            hint=hint,
        )


__all__ = [
    "ChangesetAbortedError",
    "ConflictError",
    "DependencyError",
    "InputError",
    "MissingContentError",
    "RuntimeStateError",
    "UnsafePathError",
]
