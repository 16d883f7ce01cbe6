"""Triggers: system-wide refresh commands (ldconfig, depmod, …) run once per changeset.

A trigger fires when any path the changeset added, changed or removed matches one of its
patterns, and only if its handler program exists in the target root. It runs after the DB commit,
chrooted into the target root (directly when the root is ``/``), through the same runner as
scriptlets (``conary.runtime.scriptlets.run_in_root``).

Enable/disable state is ``<root>/etc/conary/triggers.toml``:

    disabled = ["fc-cache"]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from conary.ccs import glob_matches
from conary.errors import ConaryError, InputError
from conary.fsutil import atomic_write_bytes
from conary.runtime.scriptlets import ScriptletError, check_mode, executable_in_root, run_in_root

TRIGGERS_CONFIG = Path("etc/conary/triggers.toml")

# The directories ldconfig caches: the trusted dirs plus Debian's multiarch dirs.
_LIB_DIRS = ("lib", "lib32", "lib64", "usr/lib", "usr/lib32", "usr/lib64", "usr/local/lib")
_LIB_PATTERNS = (
    *(f"{d}/*.so*" for d in _LIB_DIRS),
    "lib/*-linux-*/*.so*",
    "usr/lib/*-linux-*/*.so*",
    "etc/ld.so.conf",
    "etc/ld.so.conf.d/*",
)


@dataclass(frozen=True)
class Trigger:
    name: str
    description: str
    patterns: tuple[str, ...]
    handlers: tuple[str, ...]  # candidate handler paths in the root, first existing one is used
    # argv after the handler, one list per invocation; may depend on the root and the matched
    # paths (depmod per kernel, the icon cache per theme)
    args: Callable[[Path, Sequence[str]], list[list[str]]] = field(default=lambda root, matched: [[]])

    def handler_in(self, root: Path) -> str | None:
        for candidate in self.handlers:
            if executable_in_root(root, candidate):
                return "/" + candidate
        return None

    def matches(self, paths: Iterable[str]) -> list[str]:
        return sorted(p for p in paths if any(glob_matches(pattern, p) for pattern in self.patterns))


def _top_dirs(root: Path, base: str, matched: Sequence[str]) -> set[str]:
    """First directories under BASE that matched paths fall in and that still exist in ROOT (a
    changeset that removed a whole kernel or icon theme leaves nothing to refresh there)."""
    names = {p[len(base) + 1 :].split("/", 1)[0] for p in matched if p.startswith(base + "/")}
    return {name for name in names if name and (root / base / name).is_dir()}


def _depmod_args(root: Path, matched: Sequence[str]) -> list[list[str]]:
    versions = _top_dirs(root, "usr/lib/modules", matched) | _top_dirs(root, "lib/modules", matched)
    return [["-a", v] for v in sorted(versions)]


def _icon_args(root: Path, matched: Sequence[str]) -> list[list[str]]:
    return [
        ["-q", "-t", "-f", f"/usr/share/icons/{t}"]
        for t in sorted(_top_dirs(root, "usr/share/icons", matched))
    ]


BUILTIN_TRIGGERS: tuple[Trigger, ...] = (
    Trigger(
        "ldconfig",
        "rebuild the shared library cache (/etc/ld.so.cache)",
        _LIB_PATTERNS,
        ("usr/sbin/ldconfig", "sbin/ldconfig"),
    ),
    Trigger(
        "depmod",
        "rebuild kernel module dependency lists",
        ("usr/lib/modules/**", "lib/modules/**"),
        ("usr/sbin/depmod", "sbin/depmod", "usr/bin/depmod", "bin/depmod"),
        _depmod_args,
    ),
    Trigger(
        "systemd-sysusers",
        "create system users and groups declared in sysusers.d",
        ("usr/lib/sysusers.d/*",),
        ("usr/bin/systemd-sysusers", "bin/systemd-sysusers"),
    ),
    Trigger(
        "systemd-tmpfiles",
        "create files and directories declared in tmpfiles.d",
        ("usr/lib/tmpfiles.d/*",),
        ("usr/bin/systemd-tmpfiles", "bin/systemd-tmpfiles"),
        lambda root, matched: [["--create"]],
    ),
    Trigger(
        "update-mime-database",
        "rebuild the shared MIME-info database",
        ("usr/share/mime/packages/*",),
        ("usr/bin/update-mime-database",),
        lambda root, matched: [["/usr/share/mime"]],
    ),
    Trigger(
        "update-desktop-database",
        "rebuild the desktop entry MIME cache",
        ("usr/share/applications/*.desktop",),
        ("usr/bin/update-desktop-database",),
        lambda root, matched: [["-q", "/usr/share/applications"]],
    ),
    Trigger(
        "glib-compile-schemas",
        "compile GSettings schemas",
        ("usr/share/glib-2.0/schemas/*",),
        ("usr/bin/glib-compile-schemas",),
        lambda root, matched: [["/usr/share/glib-2.0/schemas"]],
    ),
    Trigger(
        "gtk-update-icon-cache",
        "rebuild icon theme caches",
        ("usr/share/icons/**",),
        ("usr/bin/gtk-update-icon-cache", "usr/bin/gtk4-update-icon-cache"),
        _icon_args,
    ),
    Trigger(
        "fc-cache",
        "rebuild the fontconfig cache",
        ("usr/share/fonts/**",),
        ("usr/bin/fc-cache",),
        lambda root, matched: [["-s"]],
    ),
    Trigger(
        "systemctl-daemon-reload",
        "reload systemd unit files",
        ("usr/lib/systemd/system/*", "lib/systemd/system/*"),
        ("usr/bin/systemctl", "bin/systemctl"),
        lambda root, matched: [["daemon-reload"]],
    ),
)


def normalize_path(path: str) -> str:
    return os.path.normpath("/" + path).lstrip("/")


# --- state ---------------------------------------------------------------------------------------


def get_trigger(name: str) -> Trigger:
    for trigger in BUILTIN_TRIGGERS:
        if trigger.name == name:
            return trigger
    known = ", ".join(t.name for t in BUILTIN_TRIGGERS)
    raise InputError(f"no trigger named {name!r}", hint=f"known triggers: {known}")


def disabled_triggers(root: str | os.PathLike[str]) -> set[str]:
    path = Path(root) / TRIGGERS_CONFIG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"malformed trigger configuration: {err}", where=str(path))
    disabled = data.get("disabled", [])
    if not isinstance(disabled, list) or not all(isinstance(n, str) for n in disabled):
        raise InputError("'disabled' must be a list of trigger names", where=str(path))
    return set(disabled)


def set_enabled(root: str | os.PathLike[str], name: str, enabled: bool, *, dry_run: bool = False) -> None:
    get_trigger(name)
    disabled = disabled_triggers(root)
    if enabled:
        disabled.discard(name)
    else:
        disabled.add(name)
    if dry_run:
        return
    atomic_write_bytes(Path(root) / TRIGGERS_CONFIG, tomli_w.dumps({"disabled": sorted(disabled)}).encode())


@dataclass(frozen=True)
class TriggerStatus:
    name: str
    description: str
    patterns: tuple[str, ...]
    enabled: bool
    handler: str | None  # path in the root, None when absent

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "patterns": list(self.patterns),
            "enabled": self.enabled,
            "handler": self.handler,
            "handler_present": self.handler is not None,
        }


def trigger_status(root: str | os.PathLike[str]) -> list[TriggerStatus]:
    root = Path(root)
    disabled = disabled_triggers(root)
    return [
        TriggerStatus(t.name, t.description, t.patterns, t.name not in disabled, t.handler_in(root))
        for t in BUILTIN_TRIGGERS
    ]


# --- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTrigger:
    trigger: Trigger
    handler: str
    commands: tuple[tuple[str, ...], ...]
    matched: tuple[str, ...]


def plan_triggers(root: str | os.PathLike[str], changed_paths: Iterable[str]) -> list[PlannedTrigger]:
    """The triggers CHANGED_PATHS fire in ROOT, in their fixed order, each with its commands."""
    root = Path(root)
    paths = {normalize_path(p) for p in changed_paths}
    paths.discard("")
    disabled = disabled_triggers(root)
    planned = []
    for trigger in BUILTIN_TRIGGERS:
        if trigger.name in disabled:
            continue
        handler = trigger.handler_in(root)  # a few stat calls: cheaper than matching every path
        if handler is None:
            continue
        matched = trigger.matches(paths)
        if not matched:
            continue
        commands = tuple((handler, *args) for args in trigger.args(root, matched))
        if commands:
            planned.append(PlannedTrigger(trigger, handler, commands, tuple(matched)))
    return planned


class TriggerError(ConaryError):
    """A trigger's handler failed. The changeset it followed stays committed.

    `ran` names every trigger that was run, the failed ones included."""

    ran: tuple[str, ...] = ()


def run_triggers(root: Path, changed_paths: set[str], sandbox_mode: str) -> list[str]:
    """Run every enabled trigger CHANGED_PATHS fire, once each. Returns the names run.

    Runs all of them even if one fails, then raises TriggerError naming the failures.
    """
    root = Path(root)
    check_mode(sandbox_mode)
    if root.resolve() == Path("/"):
        sandbox_mode = "never"  # on the running system the handlers run directly, as the host's own
    ran: list[str] = []
    failures: list[str] = []
    for plan in plan_triggers(root, changed_paths):
        ran.append(plan.trigger.name)
        for argv in plan.commands:
            try:
                run_in_root(root, list(argv), sandbox_mode, what=f"trigger {plan.trigger.name}")
            except ScriptletError as err:
                failures.append(err.what)
    if failures:
        error = TriggerError(
            "; ".join(failures),
            where=str(root),
            hint="the changeset is committed; fix the cause and rerun the command by hand in the root",
        )
        error.ran = tuple(ran)
        raise error
    return ran
