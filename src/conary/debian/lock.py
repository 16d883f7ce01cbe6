"""Seed locks: the closure of a list of Debian binary packages, pinned by sha256.

A lock (``stages/seed/<name>.lock``, TOML) records, for each .deb of the closure, its name, version,
architecture, suite, the pool path Debian's Packages index gives it, its size and its sha256.
Resolving a lock runs apt in a private state (conary.fetch.debian.PrivateApt): an empty dpkg
status, private lists and cache, and ``deb`` entries derived from the machine's apt sources and moved
to the lock's suite. Nothing of the machine's own apt state is read or written.

The closure is that of an empty system: the requested packages, Debian's Essential set (which apt
itself never adds, since it assumes a system already has it), and everything they depend on,
without Recommends.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import tomli_w

from conary.debian.errors import SeedError
from conary.errors import InputError
from conary.fetch.debian import PrivateApt, apt_error
from conary.fetch.errors import SourceUnavailable
from conary.fsutil import atomic_write_bytes

LOCK_FORMAT = 1
# Lists younger than this are used as they are when locking: a lock pins what the archive has now.
LOCK_LISTS_MAX_AGE = 600.0
SUITES = ("bookworm", "trixie", "sid")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_URI_LINE = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha256>[0-9a-f]{64})$")


@dataclass(frozen=True, order=True)
class PinnedDeb:
    """One .deb of a lock."""

    name: str
    version: str
    architecture: str
    suite: str
    filename: str  # the pool path in the archive: pool/main/h/hello/hello_2.10-3_amd64.deb
    size: int
    sha256: str

    @property
    def file_name(self) -> str:
        return self.filename.rpartition("/")[2]


@dataclass(frozen=True)
class SeedLock:
    """A resolved seed: what was asked for, and the .debs of its closure."""

    name: str  # the lock's name: "x86_64", "aarch64", "conary-x86_64"
    suite: str
    architecture: str  # Debian architecture apt resolved for (the build machine's)
    packages: tuple[str, ...]  # the requested packages, before the closure
    debs: tuple[PinnedDeb, ...]
    summary: str = ""

    def deb(self, name: str) -> PinnedDeb | None:
        return next((d for d in self.debs if d.name == name), None)

    @property
    def total_size(self) -> int:
        return sum(d.size for d in self.debs)


# --------------------------------------------------------------------------------------- files


def render_lock(lock: SeedLock) -> bytes:
    header = [
        f"# Seed lock '{lock.name}': Debian {lock.suite} packages for {lock.architecture}, pinned by sha256.",
        "# Written by `conary seed lock` (or `conary bootstrap seed --lock`); do not edit by hand.",
        f"# {len(lock.debs)} packages, {lock.total_size / 1e6:.1f} MB. The format: docs/debian-import.md.",
    ]
    if lock.summary:
        header.insert(1, f"# {lock.summary}")
    document = {
        "lock": {
            "format": LOCK_FORMAT,
            "name": lock.name,
            "suite": lock.suite,
            "architecture": lock.architecture,
            "packages": list(lock.packages),
            "summary": lock.summary,
        },
        "deb": [
            {
                "name": d.name,
                "version": d.version,
                "architecture": d.architecture,
                "suite": d.suite,
                "filename": d.filename,
                "size": d.size,
                "sha256": d.sha256,
            }
            for d in sorted(lock.debs)
        ],
    }
    return ("\n".join(header) + "\n\n").encode() + tomli_w.dumps(document).encode()


def write_lock(lock: SeedLock, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    atomic_write_bytes(target, render_lock(lock))
    return target


def read_lock(path: str | os.PathLike[str]) -> SeedLock:
    """Load and check a lock file; every problem names the file and the entry."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            "seed lock not found", where=where, hint="write it with 'conary seed lock'"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"unreadable seed lock: {exc}", where=where) from None
    head = data.get("lock")
    if not isinstance(head, dict):
        raise InputError("no [lock] table", where=where)
    if head.get("format") != LOCK_FORMAT:
        raise InputError(
            f"lock format {head.get('format')!r} is not {LOCK_FORMAT}",
            where=f"{where}: lock.format",
            hint="this Conary reads lock format 1; lock the seed again",
        )
    for key in ("name", "suite", "architecture"):
        if not isinstance(head.get(key), str) or not head[key]:
            raise InputError(f"lock.{key} must be a non-empty string", where=where)
    packages = head.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise InputError("lock.packages must be a list of package names", where=where)
    debs = []
    for index, row in enumerate(data.get("deb", [])):
        debs.append(_pinned(row, f"{where}: deb[{index}]"))
    if not debs:
        raise InputError("the lock pins no packages", where=where)
    names = [d.name for d in debs]
    if len(set(names)) != len(names):
        raise InputError("a package is pinned twice", where=where)
    return SeedLock(
        head["name"],
        head["suite"],
        head["architecture"],
        tuple(packages),
        tuple(debs),
        head.get("summary", ""),
    )


def _pinned(row: object, where: str) -> PinnedDeb:
    if not isinstance(row, dict):
        raise InputError("a [[deb]] entry must be a table", where=where)
    values = {}
    for key in ("name", "version", "architecture", "suite", "filename", "sha256"):
        value = row.get(key)
        if not isinstance(value, str) or not value:
            raise InputError(f"{key} must be a non-empty string", where=where)
        values[key] = value
    size = row.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise InputError("size must be a positive integer", where=where)
    if not _SHA256.fullmatch(values["sha256"]):
        raise InputError("sha256 must be 64 lowercase hex digits", where=where)
    if values["filename"].startswith("/") or ".." in values["filename"].split("/"):
        raise InputError(f"unsafe filename {values['filename']!r}", where=where)
    return PinnedDeb(size=size, **values)


# --------------------------------------------------------------------------------------- resolving


def private_apt(
    state_dir: Path, suite: str, architecture: str, etc_apt: Path = Path("/etc/apt")
) -> PrivateApt:
    """The private apt state a lock of *suite* for *architecture* is resolved and refreshed with."""
    if suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}", hint=f"use one of {', '.join(SUITES)}")
    return PrivateApt(
        state_dir / f"{suite}-{architecture}",
        etc_apt=etc_apt,
        kind="deb",
        suite=suite,
        architecture=architecture,
    )


def resolve_lock(
    name: str,
    packages: Sequence[str],
    *,
    suite: str,
    architecture: str,
    state_dir: Path,
    summary: str = "",
    etc_apt: Path = Path("/etc/apt"),
    essential: bool = True,
) -> SeedLock:
    """Resolve the closure of *packages* (plus Debian's Essential set, unless not *essential*) with
    apt in a private state."""
    apt = private_apt(state_dir, suite, architecture, etc_apt)
    try:
        apt.refresh(max_age=LOCK_LISTS_MAX_AGE)
    except SourceUnavailable as exc:
        raise SeedError(
            f"cannot read Debian's {suite} index: {exc.reason}", hint="check the network"
        ) from None
    wanted = sorted(set(packages) | set(essential_packages(apt) if essential else ()))
    result = apt.run(
        [
            "install",
            "--print-uris",
            "-qq",
            "-o",
            "APT::Install-Recommends=false",
            "-o",
            "APT::Install-Suggests=false",
            "-o",
            "Debug::NoLocking=true",
            "-o",
            "Acquire::ForceHash=SHA256",
            *wanted,
        ]
    )
    if result.returncode != 0:
        raise SeedError(
            f"apt cannot resolve the seed for {suite}/{architecture}: {apt_error(result.stdout)}",
            hint="check the package names in the seed list (apt-cache policy NAME)",
        )
    uris = [entry.get("URIs") or "" for entry in apt.entries()]
    debs = [
        _pinned_from_uri(line, suite, uris) for line in result.stdout.splitlines() if line.startswith("'")
    ]
    if not debs:
        raise SeedError(f"apt resolved nothing for {', '.join(packages)}")
    return SeedLock(name, suite, architecture, tuple(packages), tuple(sorted(debs)), summary)


def essential_packages(apt: PrivateApt) -> list[str]:
    """The names of the Essential: yes packages apt knows in the private state (whichever way the
    machine's apt configuration stores its lists, compressed or not)."""
    result = apt.run(["dumpavail"], tool="apt-cache")
    names: set[str] = set()
    package = None
    for line in result.stdout.splitlines():
        if line.startswith("Package: "):
            package = line[9:].strip()
        elif line.startswith("Essential: yes") and package:
            names.add(package)
    if not names:
        raise SeedError(f"no Essential packages in the {apt.suite} index", where=str(apt.lists_dir))
    return sorted(names)


def _pinned_from_uri(line: str, suite: str, uris: Iterable[str]) -> PinnedDeb:
    match = _URI_LINE.match(line.strip())
    if not match:
        raise SeedError(f"unexpected line from apt-get --print-uris: {line.strip()!r}")
    url = match.group("url")
    filename = next(
        (
            url[len(base.rstrip("/")) + 1 :]
            for base in uris
            if base and url.startswith(base.rstrip("/") + "/")
        ),
        None,
    )
    if filename is None:
        raise SeedError(f"{url} is under none of the derived archive URIs")
    name, version, arch = unquote(match.group("file")).removesuffix(".deb").split("_")
    return PinnedDeb(
        name, version, arch, suite, unquote(filename), int(match.group("size")), match.group("sha256")
    )


def current_version(apt: PrivateApt, name: str) -> str | None:
    """The version of *name* the archive has now (after refreshing the lists), or None."""
    try:
        apt.refresh(max_age=LOCK_LISTS_MAX_AGE)
    except SourceUnavailable:
        return None
    result = apt.run(["show", "--no-all-versions", name], tool="apt-cache")
    for line in result.stdout.splitlines():
        if line.startswith("Version: "):
            return line[9:].strip()
    return None
