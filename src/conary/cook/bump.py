"""`conary recipe bump --from-debian`: move a recipe's version and checksum to what Debian ships.

Distro builders pin Debian's tarballs (hello's orig tarball is upstream's; zlib's and the kernel's
are Debian repacks). When Debian moves on and the pinned file leaves the archive, the recipe needs
the new version, the digest of the new tarball and, where the URL names the version, a new URL.
This module works those out by downloading what Debian ships (so a file the index lists but the pool
lacks is caught here, not at the next cook) and edits the recipe's text in place: comments, order
and layout stay as the packager wrote them. The new tarball goes into the source cache, so the next
cook finds it without the network.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conary.errors import InputError
from conary.fetch.cache import SourceCache, default_cache_dir
from conary.fetch.checksum import digest_file
from conary.fetch.debian import DebianRelease, DebianSourceProvider, DebianSpec, default_state_dir
from conary.fetch.errors import FetchError, SourceUnavailable
from conary.fetch.fetcher import filename_from_url
from conary.fsutil import atomic_writer
from conary.recipe import Recipe, loads_recipe
from conary.recipe.edit import get_string, set_string


@dataclass(frozen=True)
class BumpPlan:
    """The edit `recipe bump` makes, before it is written."""

    path: Path
    old_text: str
    new_text: str
    package: str  # the Debian source package
    debian_version: str  # what Debian ships, e.g. 2.12-1
    old_version: str
    new_version: str
    checksum: str  # the digest of Debian's tarball, as the recipe now pins it
    tarball: str  # Debian's file name, e.g. hello_2.12.orig.tar.gz
    suite: str | None

    @property
    def changed(self) -> bool:
        return self.new_text != self.old_text

    def diff(self) -> str:
        name = str(self.path)
        lines = difflib.unified_diff(
            self.old_text.splitlines(keepends=True),
            self.new_text.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def debian_provider(cache: SourceCache, suite: str | None) -> DebianSourceProvider:
    """The provider the fetcher uses (shared apt lists), or one with its own state for *suite*."""
    state = default_state_dir(cache.root)
    if suite is None:
        return DebianSourceProvider(state)
    return DebianSourceProvider(state / "suites" / suite, suite=suite)


def plan_bump_from_debian(
    recipe_path: str | os.PathLike[str],
    *,
    suite: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    provider: DebianSourceProvider | None = None,
) -> BumpPlan:
    """Work out the new version, checksum and URL of *recipe_path* from what Debian ships now."""
    path = Path(recipe_path)
    try:
        old_text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read the recipe: {err.strerror or err}", where=str(path))
    recipe = loads_recipe(old_text, str(path))
    if recipe.source.archive is None or recipe.source.checksum is None:
        raise InputError(
            "the recipe has no source.archive to bump", where=str(path), hint="bump works on archive recipes"
        )
    debian = recipe.source.debian
    pinned = DebianSpec.parse(debian) if debian else DebianSpec(recipe.package.name)
    cache = SourceCache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    provider = provider or debian_provider(cache, suite)
    where = f"debian source {pinned.package}" + (f" in {suite}" if suite else "")

    downloads = provider.state_dir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        try:
            release = provider.release(DebianSpec(pinned.package), Path(tmp))
        except SourceUnavailable as exc:
            raise FetchError(exc.reason, where=where, hint=_source_hint(exc.reason, suite))
        tarball = release.tarball
        if tarball is None:
            names = ", ".join(p.name for p in release.files)
            raise FetchError(
                f"Debian's {release.package} {release.version} has no upstream tarball (it has {names})",
                where=where,
            )
        algo = recipe.source.checksum.algo if recipe.source.checksum.algo != "md5" else "sha256"
        checksum = str(digest_file(tarball, algo))
        cache.add_file(tarball, checksum, origin=f"{where}: {tarball.name}")

    new_text = _edit(old_text, recipe, release, pinned, tarball.name, checksum)
    _check_result(new_text, path, release.upstream_version, checksum)
    return BumpPlan(
        path=path,
        old_text=old_text,
        new_text=new_text,
        package=release.package,
        debian_version=release.version,
        old_version=recipe.package.version,
        new_version=release.upstream_version,
        checksum=checksum,
        tarball=tarball.name,
        suite=suite,
    )


def write_bump(plan: BumpPlan) -> None:
    """Replace the recipe file with the plan's text, atomically and with its mode kept. Refuses when
    the file changed since the plan was made."""
    target = plan.path.resolve()
    if target.read_text(encoding="utf-8") != plan.old_text:
        raise InputError(
            "the recipe changed while it was being bumped", where=str(plan.path), hint="run the bump again"
        )
    mode = target.stat().st_mode & 0o7777
    with atomic_writer(target, mode=mode) as out:
        out.write(plan.new_text.encode("utf-8"))


def _edit(
    text: str, recipe: Recipe, release: DebianRelease, pinned: DebianSpec, tarball: str, checksum: str
) -> str:
    old_version, new_version = recipe.package.version, release.upstream_version
    if new_version != old_version:
        text = set_string(text, "package", "version", new_version)
    if checksum != str(recipe.source.checksum):
        text = set_string(text, "source", "checksum", checksum)
    url = get_string(text, "source", "archive")
    if url is not None:
        new_url = _new_url(url, recipe.package.name, pinned.package, old_version, new_version, tarball)
        if new_url != url:
            text = set_string(text, "source", "archive", new_url)
    if pinned.version is not None and pinned.version != release.version:
        text = set_string(text, "source", "debian", f"{pinned.package}={release.version}")
    return text


def _new_url(url: str, name: str, package: str, old: str, new: str, tarball: str) -> str:
    """The archive URL for the new version: a URL into Debian's pool takes the new file name; a URL
    that names the version literally takes the new version; a URL written with %(version)s, or one
    that does not name the version, stays as it is."""
    if "%(" in url:
        return url
    head, _, last = url.rpartition("/")
    if last.startswith(f"{package}_") and ".tar." in last:  # a file name from Debian's pool
        return f"{head}/{tarball}"
    if old == new:
        return url
    return re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w|\.\d)", new, url)


def _check_result(text: str, path: Path, version: str, checksum: str) -> None:
    """The edited text must still be a valid recipe that pins what Debian ships."""
    recipe = loads_recipe(text, str(path))
    if recipe.package.version != version or str(recipe.source.checksum) != checksum:
        raise InputError(
            "the edited recipe does not read back as intended", where=str(path), hint="edit it by hand"
        )
    expanded = recipe.expand()
    if expanded.source.archive and not filename_from_url(expanded.source.archive):
        raise InputError("the new source.archive names no file", where=str(path))


def _source_hint(reason: str, suite: str | None) -> str:
    if "pool lacks" in reason:
        return "the recipe is unchanged; run the bump again after the archive's next update"
    if suite is None:
        return "check the package name in source.debian, or try another suite with --suite"
    return f"check that Debian's {suite} has the package, or try another suite"
