"""Errors of the fetch layer. All are ConaryError, so the CLI renders them as one line."""

from __future__ import annotations

from conary.errors import ConaryError

OFFLINE_HINT = "add a mirror with --mirror, or run 'conary cook --fetch-only' on a networked machine"


class FetchError(ConaryError):
    """No source delivered the bytes a checksum names."""


class ChecksumMismatchError(FetchError):
    """A source delivered bytes whose checksum differs from the expected one."""

    def __init__(
        self,
        origin: str,
        expected: str,
        actual: str,
        *,
        also_tried: str | None = None,
        what: str | None = None,
        hint: str | None = None,
    ) -> None:
        if what is None:
            what = f"checksum mismatch for {origin}: expected {expected}, got {actual}"
            if also_tried:
                what += f"; also tried: {also_tried}"
        super().__init__(
            what,
            hint=hint
            or "the source changed or is corrupt; check it, and update the recipe's checksum "
            "only if the new bytes are trusted (--skip-verify builds from them as they are, and says so)",
        )
        self.origin = origin
        self.expected = expected
        self.actual = actual


class SourceUnavailable(Exception):
    """One place did not have the bytes (404, missing file, unreachable). The fetcher moves on.

    Internal to the fetch layer: the fetcher turns the collected reasons into one FetchError.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DebianChecksumMismatch(SourceUnavailable):
    """Debian's archive had the package, but its tarball's digest is not the pinned one."""

    def __init__(self, package: str, version: str, filename: str, actual: str, upstream_version: str) -> None:
        super().__init__(f"Debian's {filename} ({package} {version}) is {actual}")
        self.package = package
        self.version = version  # the full Debian version
        self.filename = filename
        self.actual = actual
        self.upstream_version = upstream_version
