"""Locate the distro tree (recipes/, stages/, toolchains/, images/) shipped with Conary."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def tree_dir(name: str) -> Path:
    """The shipped folder *name*: inside the wheel when installed, the checkout's top level otherwise."""
    installed = _PACKAGE_DIR / "_tree" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent.parent / name
