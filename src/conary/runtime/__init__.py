"""The installer runtime: database, content store, transactions, states, rollback.

Public API (other areas assemble roots with these):

    init_root(root) -> bool
    install_packages(root, paths, *, trusted_keys=None, allow_untrusted=False, sandbox="auto",
                     check_deps=True, dry_run=False, init=True) -> Outcome
    install(root, items, ...) / update(root, items, ...) / remove(root, names, ...) -> Outcome
    rollback(root, state_number, ...) -> Outcome
    list_installed(root) / list_states(root) / diff_states(root, a, b)
    verify(root, names) / restore(root, names) / gc(root, keep_states=None) / recover(root)
    open_root(root) -> context manager yielding a RootSession (db, cas, fs) for repos and resolvers

Repositories, keys, resolution, triggers and scriptlets live beside this core in repo.py, keys.py,
resolver.py, triggers.py and scriptlets.py; docs/runtime.md describes both halves.
"""

from __future__ import annotations

from conary.runtime.maintenance import GcReport, Problem, gc, recover, restore, verify
from conary.runtime.operations import (
    Outcome,
    PackageSource,
    install,
    install_packages,
    remove,
    rollback,
    update,
)
from conary.runtime.queries import InstalledPackage, list_installed
from conary.runtime.scriptlets import SANDBOX_MODES
from conary.runtime.session import RootSession, init_root, open_root
from conary.runtime.states import StateDiff, diff_states, list_states

__all__ = [
    "SANDBOX_MODES",
    "GcReport",
    "InstalledPackage",
    "Outcome",
    "PackageSource",
    "Problem",
    "RootSession",
    "StateDiff",
    "diff_states",
    "gc",
    "init_root",
    "install",
    "install_packages",
    "list_installed",
    "list_states",
    "open_root",
    "recover",
    "remove",
    "restore",
    "rollback",
    "update",
    "verify",
]
