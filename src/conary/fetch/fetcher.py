"""The fetcher: from a checksum (and a URL that says where the bytes might be) to a verified cache file.

Order: the cache; a local file (``file:`` URL, absolute or recipe-relative path); the mirrors in order,
each by checksum then by file name; the Debian source archive when the source names a Debian package;
and last the URL itself. Debian goes before the URL because the archive is often reachable where
upstream sites are not, and a dead upstream costs a connect timeout. Offline, only the cache, local
files and directory mirrors are tried.

With ``skip_verify`` (``--skip-verify``: an operator's escape hatch for a re-rolled tarball), a
source whose every candidate had bytes other than the pinned ones is not a failure: the first such
bytes in that order are taken, stored in the cache under their ACTUAL checksum, and a note in the
cache records which checksum stood in for the pinned one (SourceCache.note_substitute). A later
skip-verify fetch of the same pin takes the noted bytes without asking the network again. Missing
bytes (nothing anywhere) still fail.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conary.fetch.cache import SourceCache, Substitute, default_cache_dir
from conary.fetch.checksum import Checksum
from conary.fetch.debian import DebianSourceProvider, DebianSpec, default_state_dir
from conary.fetch.errors import (
    OFFLINE_HINT,
    ChecksumMismatchError,
    DebianChecksumMismatch,
    FetchError,
    SourceUnavailable,
)
from conary.fetch.http import HttpDownloader
from conary.fetch.mirrors import HttpMirror, Mirror, configured_mirrors


def filename_from_url(url: str) -> str:
    """The file name a URL or path ends in ('' if none), e.g. 'hello-2.10.tar.gz'."""
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return "" if name in (".", "..") or "/" in name or "\0" in name else name


@dataclass(frozen=True)
class Fetched:
    """Where a source's bytes are in the cache, and whether they are the pinned ones."""

    path: Path
    substitute: Substitute | None = None  # set when unverified bytes stand in for the pin

    @property
    def verified(self) -> bool:
        return self.substitute is None


@dataclass(frozen=True)
class _Mismatch:
    origin: str
    actual: str
    # Gets the same place's bytes again into the cache, under the checksum given (their actual one).
    retrieve: Callable[[Checksum], Path]


class Fetcher:
    def __init__(
        self,
        cache: SourceCache,
        mirrors: Sequence[Mirror] = (),
        *,
        offline: bool = False,
        progress: bool | None = None,
        debian: DebianSourceProvider | None = None,
    ) -> None:
        """*progress*: None shows a bar when stderr is a terminal. *debian*: None uses a provider whose
        private apt state lives in the cache root (``<cache>/.debian-apt``)."""
        self.cache = cache
        self.mirrors = list(mirrors)
        self.offline = offline
        self.http = HttpDownloader(progress=progress)
        self.debian = debian or DebianSourceProvider(default_state_dir(cache.root))

    def lookup(self, checksum: str | Checksum) -> Path | None:
        """The cached file for *checksum*, without fetching."""
        return self.cache.path_for(checksum)

    def fetch(
        self,
        url: str,
        checksum: str | Checksum,
        *,
        recipe_dir: Path | None = None,
        debian: DebianSpec | str | None = None,
        filename: str | None = None,
        version: str | None = None,
    ) -> Path:
        """Return the cache path of the bytes *checksum* names, fetching them if needed.

        *url*: http(s) URL, ``file:`` URL, or a path (relative paths are relative to *recipe_dir*, else
        the current directory). *debian*: ``"package[=version]"`` whose source files may hold the bytes.
        *filename*: the name to look up on mirrors; defaults to the URL's last path segment.
        *version*: the upstream version the recipe pins, so that a Debian tarball of another version
        is reported as an outdated pin rather than as a checksum typo.
        The cache file has no extension: take the archive format from the URL's file name.
        Raises FetchError (ChecksumMismatchError when some source had different bytes).
        """
        return self.fetch_source(
            url, checksum, recipe_dir=recipe_dir, debian=debian, filename=filename, version=version
        ).path

    def fetch_source(
        self,
        url: str,
        checksum: str | Checksum,
        *,
        recipe_dir: Path | None = None,
        debian: DebianSpec | str | None = None,
        filename: str | None = None,
        version: str | None = None,
        skip_verify: bool = False,
    ) -> Fetched:
        """As fetch(); with *skip_verify*, bytes that differ from the pin are used when no
        candidate has the pinned ones, and the result's `substitute` says so."""
        cs = Checksum.parse(checksum)
        spec = DebianSpec.parse(debian) if debian else None
        name = filename if filename is not None else filename_from_url(url)
        found = self._cached(cs, skip_verify)
        if found is not None:
            return found
        with self.cache.lock(cs):
            found = self._cached(cs, skip_verify)  # another process may have fetched it meanwhile
            if found is not None:
                return found
            return self._fetch_uncached(url, cs, recipe_dir, spec, name, version, skip_verify)

    def _cached(self, cs: Checksum, skip_verify: bool) -> Fetched | None:
        hit = self.cache.path_for(cs)
        if hit is not None:
            return Fetched(hit)
        substitute = self.cache.substitute_for(cs) if skip_verify else None
        if substitute is not None:
            path = self.cache.path_for(substitute.actual)
            if path is not None:
                return Fetched(path, substitute)
        return None

    def _fetch_uncached(
        self,
        url: str,
        cs: Checksum,
        recipe_dir: Path | None,
        spec: DebianSpec | None,
        name: str,
        version: str | None,
        skip_verify: bool,
    ) -> Fetched:
        tried: list[str] = ["cache"]
        mismatches: list[_Mismatch] = []
        debian_mismatch: DebianChecksumMismatch | None = None

        def attempt(label: str, locations: Sequence[str]) -> Path | None:
            reasons: list[str] = []
            for location in locations:
                try:
                    return self._from_location(location, cs)
                except SourceUnavailable as exc:
                    reasons.append(exc.reason)
                except ChecksumMismatchError as exc:
                    again = functools.partial(self._from_location, location)
                    mismatches.append(_Mismatch(exc.origin, exc.actual, again))
                    reasons.append(f"checksum mismatch at {location}: got {exc.actual}")
            tried.append(f"{label} ({'; '.join(dict.fromkeys(reasons))})")
            return None

        local = local_path(url, recipe_dir)
        if local is not None and (found := attempt(str(local), [str(local)])):
            return Fetched(found)
        for mirror in self.mirrors:
            if self.offline and isinstance(mirror, HttpMirror):
                tried.append(f"{mirror.describe()} (not tried: offline)")
                continue
            if found := attempt(mirror.describe(), mirror.locations(cs, name or None)):
                return Fetched(found)
        if spec is not None:
            if self.offline:
                tried.append(f"{self.debian.describe(spec)} (not tried: offline)")
            else:
                try:
                    return Fetched(self.debian.retrieve(spec, cs, self.cache))
                except DebianChecksumMismatch as exc:
                    debian_mismatch = exc
                    again = functools.partial(self.debian.retrieve, spec, cache=self.cache)
                    origin = f"{self.debian.describe(spec)}: {exc.filename}"
                    mismatches.append(_Mismatch(origin, exc.actual, again))
                    tried.append(f"{self.debian.describe(spec)} ({exc.reason})")
                except SourceUnavailable as exc:
                    tried.append(f"{self.debian.describe(spec)} ({exc.reason})")
        if local is None:
            scheme = urlsplit(url).scheme.lower()
            if scheme not in ("http", "https"):
                tried.append(f"{url} (unsupported URL scheme '{scheme}')")
            elif self.offline:
                tried.append(f"{url} (not tried: offline)")
            elif found := attempt(url, [url]):
                return Fetched(found)
        summary = ", ".join(tried)
        if skip_verify and mismatches:
            return self._substitute(cs, mismatches[0], name or url)
        if debian_mismatch is not None:
            raise _debian_mismatch(debian_mismatch, str(cs), version, name or url)
        if mismatches:
            first = mismatches[0]  # the local, mirror and URL ones (Debian's was raised above)
            raise ChecksumMismatchError(first.origin, str(cs), first.actual, also_tried=summary)
        state = " (offline)" if self.offline else ""
        raise FetchError(f"{cs} not found{state}: tried {summary}", where=name or url, hint=OFFLINE_HINT)

    def _substitute(self, pinned: Checksum, found: _Mismatch, where: str) -> Fetched:
        """Take *found*'s bytes for *pinned* (skip-verify): cached under their actual checksum."""
        actual = Checksum.parse(found.actual)
        with self.cache.lock(actual):
            path = self.cache.path_for(actual)
            if path is None:
                try:
                    path = found.retrieve(actual)
                except (SourceUnavailable, ChecksumMismatchError) as exc:
                    now = exc.actual if isinstance(exc, ChecksumMismatchError) else exc.reason
                    raise FetchError(
                        f"{found.origin} changed while it was read: first {found.actual}, then {now}",
                        where=where,
                        hint="try again; bytes that change between two reads are not ones to build from",
                    ) from None
        substitute = Substitute(str(pinned), str(actual), found.origin)
        self.cache.note_substitute(substitute)
        return Fetched(path, substitute)

    def _from_location(self, location: str, cs: Checksum) -> Path:
        if location.startswith(("http://", "https://")):
            return self.http.download(location, self.cache, cs)
        try:
            return self.cache.add_file(location, cs, origin=location)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise SourceUnavailable("not found")
        except PermissionError:
            raise SourceUnavailable("permission denied")


def _debian_mismatch(
    found: DebianChecksumMismatch, expected: str, version: str | None, where: str
) -> ChecksumMismatchError:
    """Debian's tarball is not the pinned one: either the recipe pins a version Debian no longer
    ships (name the one it ships), or the pinned digest is wrong (show both digests)."""
    bump = "'conary recipe bump RECIPE --from-debian'"
    if version is not None and version != found.upstream_version:
        what = (
            f"checksum mismatch: the recipe pins {found.package} {version} ({expected}), but Debian "
            f"ships {found.package} {found.version} now: {found.filename} is {found.actual}"
        )
        hint = f"{bump} moves the recipe to {found.upstream_version}, or add a mirror that has {version}"
    else:
        what = (
            f"checksum mismatch: Debian's {found.filename} ({found.package} {found.version}) is "
            f"{found.actual}, the recipe pins {expected}"
        )
        hint = f"check the recipe's checksum for a typo; if Debian's bytes are the ones you want, run {bump}"
    error = ChecksumMismatchError(found.filename, expected, found.actual, what=what, hint=hint)
    error.where = where
    return error


def local_path(url: str, recipe_dir: Path | None) -> Path | None:
    """The local file a URL names, or None for a remote URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(unquote(parts.path))
    if scheme:
        return None
    path = Path(url).expanduser()
    return path if path.is_absolute() else (recipe_dir or Path.cwd()) / path


def make_fetcher(
    cli_mirrors: Sequence[str] = (),
    *,
    offline: bool = False,
    progress: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    mirror_config: str | os.PathLike[str] | None = None,
) -> Fetcher:
    """The fetcher a command uses: the default cache, ``--mirror`` values, then the mirror config."""
    cache = SourceCache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return Fetcher(cache, configured_mirrors(cli_mirrors, mirror_config), offline=offline, progress=progress)
