"""Errors of the installer runtime core (database, transactions, states)."""

from __future__ import annotations

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


__all__ = [
    "ConflictError",
    "DependencyError",
    "InputError",
    "MissingContentError",
    "RuntimeStateError",
    "UnsafePathError",
]
