"""Errors raised by the CCS package library."""

from __future__ import annotations

from conary.errors import ConaryError, InputError


class CcsError(ConaryError):
    """A CCS package could not be built, read or written."""


class CcsVerifyError(CcsError):
    """A CCS package failed verification: it is corrupt, tampered with, malicious or over budget."""


class CcsInputError(CcsError, InputError):
    """Bad input to a CCS operation (metadata, ccs.toml, arguments). The CLI exits 2."""
