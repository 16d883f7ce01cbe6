"""Sources from Debian's source archive, fetched with ``apt-get source --download-only``.

The private apt state (PrivateApt) also serves binary packages: with ``kind="deb"`` its entries are
the machine's ``deb`` entries, optionally moved to another suite with their -updates and -security
companions, which is how a bootstrap seed is resolved (conary.debian.lock).

apt runs against a private state directory, never the machine's own: its source list is derived from
the machine's apt sources (every enabled ``deb`` entry becomes a ``deb-src`` entry with the same URIs,
suites, components and Signed-By keyring), and its lists, cache, status and preferences are private.
Release files are verified by apt with the machine's keyrings, and every file apt downloads is then
checked against the recipe's checksum, so the archive is just another mirror.

Recipe syntax (in ``[source]`` and in ``[[source.additional]]`` entries)::

    debian = "hello"           # Debian source package; apt's candidate version
    debian = "hello=2.10-3"    # an exact Debian version

When no file of the package has the pinned digest, the provider says which file it compared (the
orig tarball), its digest and the Debian version it came from; when apt cannot find a pinned Debian
version, it names the versions the archive ships; when the index lists a file the pool no longer
has (a 404 from the pool), it says so rather than "not found".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conary.errors import InputError
from conary.fetch.cache import SourceCache
from conary.fetch.checksum import Checksum, digest_file
from conary.fetch.errors import DebianChecksumMismatch, SourceUnavailable
from conary.fsutil import atomic_write_bytes, require_tool

LISTS_MAX_AGE = 6 * 3600.0
# After a miss, lists younger than this are not refreshed again: the miss is real.
LISTS_MIN_AGE = 600.0
APT_TIMEOUT = 1800.0

_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"[0-9A-Za-z.+~:-]+")
_SUITE = re.compile(r"[a-z0-9][a-z0-9.-]*")
# Suffixes Debian gives a repacked upstream tarball (1.2.13.dfsg, 2.0+ds1, 3.1+repack).
_REPACK = re.compile(r"[.+~](?:dfsg|ds|repack)[0-9.]*$")
# apt-get's progress lines name the package and version of each file: "Err:2 URI SUITE hello 2.10-3 (tar)".
_APT_ITEM = re.compile(r"^(?:Get|Err|Hit|Ign):\d+ \S+ \S+ (\S+) (\S+) \(")
_POOL_MISS = re.compile(r"Failed to fetch (\S+)\s+(404\s+.*?)(?:\s+\[IP:.*)?$")


def upstream_version(debian_version: str) -> str:
    """The upstream part of a Debian version, without a repack suffix: 1:1.2.13.dfsg-1 -> 1.2.13."""
    version = debian_version.split(":", 1)[-1]
    if "-" in version:
        version = version.rsplit("-", 1)[0]
    return _REPACK.sub("", version)


def main_tarball(package: str, debian_version: str, names: Iterable[str]) -> str | None:
    """The upstream tarball among a source package's file names: the orig tarball (not a component
    tarball or a signature), else a native package's own tarball."""
    version = debian_version.split(":", 1)[-1]
    upstream = version.rsplit("-", 1)[0] if "-" in version else version
    names = [n for n in names if not n.endswith(".asc")]
    for prefix in (f"{package}_{upstream}.orig.tar.", f"{package}_{version}.tar."):
        found = [n for n in names if n.startswith(prefix)]
        if found:
            return found[0]
    return None


def dsc_field(path: Path, name: str) -> str | None:
    """One field of a .dsc file (signed or not), e.g. Version or Source."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    return None


@dataclass(frozen=True)
class DebianRelease:
    """What Debian ships for a source package: its version and the files apt downloaded."""

    package: str
    version: str  # the full Debian version, e.g. 2.10-3 or 1:1.2.13.dfsg-1
    files: tuple[Path, ...]

    @property
    def upstream_version(self) -> str:
        return upstream_version(self.version)

    @property
    def tarball(self) -> Path | None:
        name = main_tarball(self.package, self.version, (p.name for p in self.files))
        return next((p for p in self.files if p.name == name), None)


@dataclass(frozen=True)
class DebianSpec:
    """A Debian source package, optionally at an exact version: ``package[=version]``."""

    package: str
    version: str | None = None

    def __post_init__(self) -> None:
        if not _PACKAGE.fullmatch(self.package):
            raise InputError(
                f"invalid Debian package name '{self.package}'",
                hint='write debian = "package" or "package=version"',
            )
        if self.version is not None and not _VERSION.fullmatch(self.version):
            raise InputError(f"invalid Debian version '{self.version}'", hint='e.g. debian = "hello=2.10-3"')

    @classmethod
    def parse(cls, text: str | DebianSpec) -> DebianSpec:
        """``"hello"`` or ``"hello=2.10-3"``; a DebianSpec is returned as it is."""
        if isinstance(text, DebianSpec):
            return text
        package, sep, version = str(text).strip().partition("=")
        return cls(package.strip(), version.strip() if sep else None)

    def apt_argument(self) -> str:
        return f"{self.package}={self.version}" if self.version else self.package

    def __str__(self) -> str:
        return self.apt_argument()


# ---------------------------------------------------------------------------------------------------
# Deriving deb-src entries from the machine's apt sources


@dataclass(frozen=True)
class SourceEntry:
    """One deb-src entry in deb822 form: ordered (field, value) pairs."""

    fields: tuple[tuple[str, str], ...]

    def render(self) -> str:
        return "".join(f"{name}: {value}\n" for name, value in self.fields)

    def get(self, name: str) -> str | None:
        for field, value in self.fields:
            if field.lower() == name.lower():
                return value
        return None


# One-line options and their deb822 field names (sources.list(5)).
_ONE_LINE_OPTIONS = {
    "arch": "Architectures",
    "lang": "Languages",
    "target": "Targets",
    "pdiffs": "PDiffs",
    "by-hash": "By-Hash",
    "allow-insecure": "Allow-Insecure",
    "allow-weak": "Allow-Weak",
    "allow-downgrade-to-insecure": "Allow-Downgrade-To-Insecure",
    "trusted": "Trusted",
    "signed-by": "Signed-By",
    "check-valid-until": "Check-Valid-Until",
    "valid-until-min": "Valid-Until-Min",
    "valid-until-max": "Valid-Until-Max",
    "check-date": "Check-Date",
    "date-max-future": "Date-Max-Future",
    "inrelease-path": "InRelease-Path",
    "snapshot": "Snapshot",
}
# Fields that only concern binary packages; a source entry drops them.
_BINARY_ONLY = {"architectures", "languages", "targets"}


def parse_one_line_sources(text: str, as_type: str = "deb-src") -> list[SourceEntry]:
    """*as_type* entries (deb-src, or deb for binary packages) for the ``deb`` (and, for deb-src,
    ``deb-src``) lines of a sources.list file."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src") or (as_type == "deb" and kind != "deb"):
            continue
        rest = rest.strip()
        options: list[tuple[str, str]] = []
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                continue
            for option in rest[1:close].split():
                name, _, value = option.partition("=")
                name = name.rstrip("+-").lower()
                field = _ONE_LINE_OPTIONS.get(name)
                if field and (as_type == "deb" or field.lower() not in _BINARY_ONLY):
                    options.append((field, value.replace(",", " ")))
            rest = rest[close + 1 :].strip()
        words = rest.split()
        if len(words) < 2 or words[0].startswith("cdrom:"):
            continue
        fields = [("Types", as_type), ("URIs", words[0]), ("Suites", words[1])]
        if words[2:]:
            fields.append(("Components", " ".join(words[2:])))
        entries.append(SourceEntry(tuple(fields + options)))
    return entries


def parse_deb822_sources(text: str, kind: str = "deb-src") -> list[SourceEntry]:
    """*kind* entries for the enabled stanzas of a deb822 ``.sources`` file that list deb (or, for
    deb-src, deb-src)."""
    entries = []
    for stanza in parse_stanzas(text):
        types = next((v.split() for k, v in stanza if k.lower() == "types"), [])
        enabled = next((v.strip().lower() for k, v in stanza if k.lower() == "enabled"), "yes")
        uris = next((v for k, v in stanza if k.lower() == "uris"), "")
        wanted = {"deb"} if kind == "deb" else {"deb", "deb-src"}
        if enabled in ("no", "false", "0") or not wanted & set(types) or "cdrom:" in uris:
            continue
        fields = [("Types", kind)]
        dropped = {"types", "enabled"} | (_BINARY_ONLY if kind == "deb-src" else set())
        for name, value in stanza:
            if name.lower() in dropped:
                continue
            fields.append((name, value))
        entries.append(SourceEntry(tuple(fields)))
    return entries


def parse_stanzas(text: str) -> Iterator[list[tuple[str, str]]]:
    """The stanzas of a deb822 text (sources, control files, Packages indexes) as (field, value)
    pairs; a continuation line is appended to its field's value after a newline."""
    stanza: list[tuple[str, str]] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza = []
            continue
        if raw[0] in " \t" and stanza:
            # A continuation line (multi-line Signed-By keys); " ." stands for an empty line.
            name, value = stanza[-1]
            stanza[-1] = (name, value + "\n" + raw.rstrip())
            continue
        name, sep, value = raw.partition(":")
        if sep:
            stanza.append((name.strip(), value.strip()))
    if stanza:
        yield stanza


def derive_source_entries(etc_apt: Path = Path("/etc/apt"), kind: str = "deb-src") -> list[SourceEntry]:
    """*kind* entries (deb-src, or deb) for every enabled entry of sources.list,
    sources.list.d/*.list and *.sources."""
    entries: list[SourceEntry] = []
    main_list = etc_apt / "sources.list"
    if main_list.is_file():
        entries += parse_one_line_sources(main_list.read_text(encoding="utf-8", errors="replace"), kind)
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if not path.is_file():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.suffix == ".list":
                entries += parse_one_line_sources(text, kind)
            elif path.suffix == ".sources":
                entries += parse_deb822_sources(text, kind)
    return list(dict.fromkeys(entries))


# Suites without -updates or -security companions.
_NO_COMPANIONS = frozenset({"sid", "unstable", "experimental"})
# Debian's release names: an entry of another suite ("nodistro", "cloud-sdk-bookworm") belongs to a
# third-party repository, which has no other Debian release to point at.
_DEBIAN_RELEASES = frozenset(
    {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "unstable", "testing",
     "stable", "oldstable", "oldoldstable", "experimental"}
)  # fmt: skip


def retarget_suite(
    entries: Iterable[SourceEntry], suite: str, *, companions: bool = False
) -> list[SourceEntry]:
    """The entries of a release suite (bookworm, not bookworm-updates or -security) pointed at
    *suite* instead, for looking at another Debian release through the machine's own archive.

    With *companions*, the -updates, -security (and -backports) entries move along too
    (``bookworm-security`` becomes ``trixie-security``; sid has none): binary packages take their
    security fixes from there. Entries of third-party repositories are left out.
    """
    if not _SUITE.fullmatch(suite):
        raise InputError(f"invalid Debian suite '{suite}'", hint="e.g. --suite trixie or --suite sid")
    found = []
    for entry in entries:
        moved = []
        for name in (entry.get("Suites") or "").split():
            release, dash, companion = name.partition("-")
            if "/" in name or release not in _DEBIAN_RELEASES:
                continue
            if not dash:
                moved.append(suite)
            elif companions and suite not in _NO_COMPANIONS:
                moved.append(f"{suite}-{companion}")
        if not moved:
            continue
        suites = " ".join(dict.fromkeys(moved))
        found.append(SourceEntry(tuple((k, suites if k.lower() == "suites" else v) for k, v in entry.fields)))
    return list(dict.fromkeys(found))


def render_sources(entries: Iterable[SourceEntry]) -> str:
    return "\n".join(entry.render() for entry in entries)


# ---------------------------------------------------------------------------------------------------
# The provider


class PrivateApt:
    """apt-get and apt-cache over a private state directory: private lists and cache, an empty dpkg
    status and preferences, and entries derived from the machine's apt sources.

    kind: "deb-src" (source packages) or "deb" (binary packages).
    architecture: APT::Architecture, for binary packages of another architecture than the machine's.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        etc_apt: Path = Path("/etc/apt"),
        lists_max_age: float = LISTS_MAX_AGE,
        suite: str | None = None,
        kind: str = "deb-src",
        architecture: str | None = None,
    ) -> None:
        """*suite*: look at this Debian suite (e.g. trixie) instead of the machine's own, through the
        machine's archive entries; give each suite its own *state_dir*."""
        # Absolute: apt runs with its state dir as the working dir, where a relative path in its
        # configuration would name a dir inside itself.
        self.state_dir = Path(state_dir).absolute()
        self.etc_apt = etc_apt
        self.lists_max_age = lists_max_age
        self.suite = suite
        self.kind = kind
        self.architecture = architecture
        if suite is not None:
            retarget_suite([], suite)  # validates the name before anything runs

    def entries(self) -> list[SourceEntry]:
        """The entries the private state reads (binary entries keep their -updates and -security)."""
        entries = derive_source_entries(self.etc_apt, self.kind)
        if self.suite is not None:
            entries = retarget_suite(entries, self.suite, companions=self.kind == "deb")
        return entries

    def refresh(self, *, max_age: float | None = None) -> None:
        """Write the private sources, and update the lists when older than *max_age* (default: the
        state's own) or derived from other sources."""
        require_tool("apt-get", "apt", "read Debian's archive")
        with self._locked():
            sources = self._write_sources()
            self._update_if_stale(sources, max_age=self.lists_max_age if max_age is None else max_age)

    def run(
        self, command: list[str], *, cwd: Path | None = None, tool: str = "apt-get"
    ) -> subprocess.CompletedProcess[str]:
        """Run ``apt-get`` (or ``apt-cache``) COMMAND over the private state, under its lock."""
        with self._locked():
            return self._apt(command, cwd=cwd or self.state_dir, tool=tool)

    # -- private apt state ------------------------------------------------------------------------

    @property
    def lists_dir(self) -> Path:
        return self._lists

    @property
    def _lists(self) -> Path:
        return self.state_dir / "state" / "lists"

    @property
    def _stamp(self) -> Path:
        return self.state_dir / "state" / "updated"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write_sources(self) -> str:
        if not derive_source_entries(self.etc_apt, self.kind):
            raise SourceUnavailable(
                f"no apt sources found in {self.etc_apt} to derive {self.kind} entries from"
            )
        entries = self.entries()
        if not entries:
            raise SourceUnavailable(f"no release suite in {self.etc_apt} to point at {self.suite}")
        text = render_sources(entries)
        parts = self.state_dir / "etc" / "sources.list.d"
        target = parts / "conary.sources"
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            atomic_write_bytes(target, text.encode())
        for directory in (
            self._lists / "partial",
            self.state_dir / "cache" / "archives" / "partial",
            self.state_dir / "etc" / "preferences.d",
        ):
            directory.mkdir(parents=True, exist_ok=True)
        for empty in (self.state_dir / "state" / "status", self.state_dir / "etc" / "sources.list"):
            if not empty.exists():
                atomic_write_bytes(empty, b"")
        return text

    def _lists_age(self) -> float:
        try:
            return time.time() - self._stamp.stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def _update_if_stale(self, sources: str, *, max_age: float) -> None:
        fingerprint = hashlib.sha256(sources.encode()).hexdigest()
        try:
            current = self._stamp.read_text(encoding="utf-8").strip() == fingerprint
        except FileNotFoundError:
            current = False
        if not current or self._lists_age() > max_age:
            self._update(sources)

    def _update(self, sources: str) -> None:
        result = self._apt(["update"], cwd=self.state_dir)
        # apt-get update exits non-zero when any one index failed (say a third-party repository
        # without sources); what was fetched is still usable, and a real miss shows up in apt-get source.
        index = "*Sources*" if self.kind == "deb-src" else "*Packages*"
        if result.returncode != 0 and not any(self._lists.glob(index)):
            raise SourceUnavailable(f"apt-get update failed: {apt_error(result.stdout)}")
        atomic_write_bytes(self._stamp, hashlib.sha256(sources.encode()).hexdigest().encode() + b"\n")

    def apt_options(self) -> list[str]:
        state = self.state_dir
        options = {
            "Dir::State": state / "state",
            "Dir::State::lists": self._lists,
            "Dir::State::status": state / "state" / "status",
            "Dir::Cache": state / "cache",
            "Dir::Cache::archives": state / "cache" / "archives",
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Dir::Etc::sourcelist": state / "etc" / "sources.list",
            "Dir::Etc::sourceparts": state / "etc" / "sources.list.d",
            "Dir::Etc::preferences": state / "etc" / "preferences",
            "Dir::Etc::preferencesparts": state / "etc" / "preferences.d",
            "Acquire::Languages": "none",
            "APT::Get::List-Cleanup": "true",
        }
        if self.architecture:
            options["APT::Architecture"] = self.architecture
            options["APT::Architectures"] = self.architecture
        if os.geteuid() == 0:
            # The private state lives under the user's cache, which apt's unprivileged download user
            # (_apt) cannot reach; apt would fall back to root with a warning. Say so up front.
            # Release signatures and file hashes are checked either way.
            options["APT::Sandbox::User"] = "root"
        args = []
        for name, value in options.items():
            args += ["-o", f"{name}={value}"]
        return args

    def _apt(
        self, command: list[str], *, cwd: Path, tool: str = "apt-get"
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        argv = [tool, "-q", *self.apt_options(), *command]
        try:
            return subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=APT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SourceUnavailable(f"{tool} {command[0]} timed out after {APT_TIMEOUT:g} s")


class DebianSourceProvider(PrivateApt):
    """Fetches files of Debian source packages into the source cache, through a private apt state."""

    def describe(self, spec: DebianSpec) -> str:
        return f"debian source {spec}" + (f" in {self.suite}" if self.suite else "")

    def retrieve(self, spec: DebianSpec, checksum: Checksum, cache: SourceCache) -> Path:
        """Download *spec*'s files and add the one matching *checksum* to the cache.

        Raises SourceUnavailable when apt cannot get the package or no file of it matches.
        """
        require_tool("apt-get", "apt", "fetch sources from Debian's archive")
        with self._locked():
            sources = self._write_sources()
            self._update_if_stale(sources, max_age=self.lists_max_age)
            downloads = self.state_dir / "downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=downloads) as tmp:
                work = Path(tmp)
                files = self._download_into(spec, work, sources)
                for path in files:
                    if digest_file(path, checksum.algo) == checksum:
                        return cache.add_file(path, checksum, origin=f"{self.describe(spec)}: {path.name}")
                release = _release_of(spec, files)
                tarball = release.tarball if release is not None else None
                if release is not None and tarball is not None:
                    raise DebianChecksumMismatch(
                        release.package,
                        release.version,
                        tarball.name,
                        str(digest_file(tarball, checksum.algo)),
                        upstream_version(release.version),
                    )
                names = ", ".join(p.name for p in files) or "nothing"
                raise SourceUnavailable(f"no matching file; apt downloaded {names}")

    def download(self, spec: DebianSpec, dest: Path, *, max_age: float | None = None) -> list[Path]:
        """Download all files of *spec* into *dest*, an empty or new directory. *max_age*: refresh
        the apt lists first when they are older (default: the provider's lists_max_age)."""
        require_tool("apt-get", "apt", "fetch sources from Debian's archive")
        dest.mkdir(parents=True, exist_ok=True)
        with self._locked():
            sources = self._write_sources()
            self._update_if_stale(sources, max_age=self.lists_max_age if max_age is None else max_age)
            return self._download_into(spec, dest, sources)

    def release(self, spec: DebianSpec, dest: Path) -> DebianRelease:
        """Download what Debian ships for *spec* now into *dest* (an empty or new directory), and say
        which version it is. The apt lists are refreshed when older than 10 minutes, so "now" means
        the archive's current index, not one from hours ago."""
        files = self.download(spec, dest, max_age=LISTS_MIN_AGE)
        found = _release_of(spec, files)
        if found is None:
            names = ", ".join(p.name for p in files) or "nothing"
            raise SourceUnavailable(f"apt downloaded no .dsc for {spec}: {names}")
        return found

    def _download_into(self, spec: DebianSpec, work: Path, sources: str) -> list[Path]:
        """``apt-get source --download-only`` into *work* (call it locked). When that fails and the
        lists are more than 10 minutes old, the package may have moved on since: refresh the lists,
        clear what the failed attempt left, and ask once more."""
        result = self._apt(["source", "--download-only", spec.apt_argument()], cwd=work)
        if result.returncode != 0 and self._lists_age() > LISTS_MIN_AGE:
            self._update(sources)
            for left in work.iterdir():
                if left.is_file() or left.is_symlink():
                    left.unlink()
            result = self._apt(["source", "--download-only", spec.apt_argument()], cwd=work)
        if result.returncode != 0:
            raise SourceUnavailable(self._explain_failure(spec, result.stdout))
        return sorted(p for p in work.iterdir() if p.is_file())

    def _versions(self, package: str) -> list[str]:
        """The versions of source package *package* in the private apt index (call it locked)."""
        result = self._apt(["showsrc", "--only-source", package], cwd=self.state_dir, tool="apt-cache")
        lines = result.stdout.splitlines()
        return list(dict.fromkeys(line[8:].strip() for line in lines if line.startswith("Version:")))

    def _explain_failure(self, spec: DebianSpec, output: str) -> str:
        """One reason for a failed ``apt-get source``: a file missing from the pool, a pinned version
        the archive does not have (naming the ones it has), or apt's own error."""
        misses = [m for line in output.splitlines() if (m := _POOL_MISS.search(line))]
        if misses:
            versions = [m.group(2) for line in output.splitlines() if (m := _APT_ITEM.match(line))]
            listed = f"{spec.package} {versions[0]}" if versions else str(spec)
            names = ", ".join(m.group(1).rsplit("/", 1)[-1] for m in misses)
            status = " ".join(misses[0].group(2).split())
            return (
                f"Debian's index lists {listed}, but its pool lacks {names} ({status}): "
                "the archive dropped it after publishing the index; retry after the next archive update, "
                "or pin a version the pool has"
            )
        if spec.version is not None and f"Can not find version '{spec.version}'" in output:
            shipped = self._versions(spec.package)
            now = f"it ships {', '.join(shipped)}" if shipped else "it ships no version of it"
            return f"Debian does not ship {spec.package} {spec.version} (any more): {now}"
        return f"apt-get source failed: {apt_error(output)}"


def _release_of(spec: DebianSpec, files: Iterable[Path]) -> DebianRelease | None:
    """The release apt downloaded, from its .dsc (None when there is none). The package is the
    source package the .dsc names: *spec* may name a binary package, which apt maps to its source."""
    files = tuple(files)
    for path in files:
        if path.name.endswith(".dsc") and (version := dsc_field(path, "Version")):
            return DebianRelease(dsc_field(path, "Source") or spec.package, version, files)
    return None


def apt_error(output: str) -> str:
    """apt's own error lines, joined; the last output line when there are none."""
    errors = [line[3:].strip() for line in output.splitlines() if line.startswith("E: ")]
    if errors:
        return "; ".join(errors)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def default_state_dir(cache_root: Path) -> Path:
    return cache_root / ".debian-apt"
