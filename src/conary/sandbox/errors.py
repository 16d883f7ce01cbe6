"""Errors raised by the sandbox: one precise message, where it happened, and what to do."""

from __future__ import annotations

from conary.errors import ConaryError


class SandboxError(ConaryError):
    """Setting up or running a sandbox failed (namespaces, mounts, exec of the command)."""


class SandboxTimeout(SandboxError):
    """The command ran longer than the timeout it was given and was killed."""
