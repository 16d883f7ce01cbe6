"""Errors of Debian package import and seeds. All are ConaryError: the CLI renders them as one line."""

from __future__ import annotations

from conary.errors import ConaryError, InputError


class DebFormatError(InputError):
    """A .deb that is not a well-formed Debian binary package."""


class SeedError(ConaryError):
    """A seed lock cannot be resolved, downloaded or verified."""


class PinnedFileGone(SeedError):
    """A .deb the lock pins is no longer in Debian's archive."""
