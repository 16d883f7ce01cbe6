"""Errors of the recipe graph: each names the recipes involved and says what to do."""

from __future__ import annotations

from conary.errors import ConaryError, InputError


class GraphError(InputError):
    """The set of recipes does not form a buildable graph (a missing dependency, a cycle, a clash)."""


class StoreError(ConaryError):
    """The checkpoint store cannot be used as it is (a newer format, a damaged database)."""
