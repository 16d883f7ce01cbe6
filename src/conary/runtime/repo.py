"""Repositories a root installs from: their configuration, index sync and package fetch.

Configuration is one TOML file per repository, ``<root>/etc/conary/repos.d/<name>.toml``:

    name = "main"
    url = "/srv/repo"            # an absolute directory, or an http(s):// base URL
    enabled = true

``sync`` fetches each repository's ``index.json`` + ``index.json.sig``, verifies them against the
root's trusted keys and keeps the verified copy in ``<root>/var/lib/conary/repos/<name>/``.
Directory repositories are read live (and verified) on every resolution, so a re-indexed
directory is seen at once; http repositories use the synced copy (synced on first use).
Packages from http repositories are downloaded into ``<root>/var/cache/conary/packages/``.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import tomli_w

from conary.ccs import CcsError, PublicKey, open_package
from conary.errors import ConaryError, InputError
from conary.fsutil import atomic_write_bytes, atomic_writer, fsync_dir
from conary.runtime.index import (
    INDEX_NAME,
    MAX_INDEX_BYTES,
    SIGNATURE_NAME,
    IndexEntry,
    RepoIndex,
    RepoIndexError,
    file_sha256,
    verify_index,
)
from conary.runtime.keys import trusted_keys
from conary.runtime.layout import layout

REPOS_DIR = Path("etc/conary/repos.d")
STATE_DIR = Path("var/lib/conary/repos")
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RepoError(ConaryError):
    """A repository could not be configured, reached or read."""


@dataclass(frozen=True)
class Repo:
    name: str
    url: str  # absolute directory path or http(s) base URL
    enabled: bool = True

    @property
    def is_http(self) -> bool:
        return self.url.startswith(("http://", "https://"))

    @property
    def kind(self) -> str:
        return "http" if self.is_http else "dir"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "url": self.url, "enabled": self.enabled, "kind": self.kind}


def _config_path(root: Path, name: str) -> Path:
    return root / REPOS_DIR / f"{name}.toml"


def _state_dir(root: Path, name: str) -> Path:
    return root / STATE_DIR / name


def add_repo(root: str | os.PathLike[str], name: str, location: str, *, dry_run: bool = False) -> Repo:
    """Configure repository NAME at LOCATION (a directory or an http(s) URL) for ROOT."""
    root = Path(root)
    if not _NAME.match(name):
        raise InputError(
            f"invalid repository name {name!r}",
            hint="use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)",
        )
    if location.startswith(("http://", "https://")):
        parts = urlsplit(location)
        if not parts.netloc:
            raise InputError(f"invalid repository URL {location!r}", where=name)
        url = location.rstrip("/")
    elif "://" in location:
        raise InputError(
            f"unsupported repository URL scheme in {location!r}",
            where=name,
            hint="use a local directory or an http(s):// URL",
        )
    else:
        directory = Path(location).resolve()
        if not directory.is_dir():
            raise InputError("repository directory does not exist", where=str(directory))
        url = str(directory)
    path = _config_path(root, name)
    if path.exists():
        raise InputError(
            f"repository {name!r} is already configured",
            where=str(path),
            hint="choose another name, or edit or delete that file",
        )
    repo = Repo(name, url, True)
    if dry_run:
        return repo
    atomic_write_bytes(path, tomli_w.dumps({"name": name, "url": url, "enabled": True}).encode())
    return repo


def _configured(root: Path, name: str) -> tuple[Path, Repo]:
    path = _config_path(root, name)
    if not _NAME.match(name) or not path.is_file():
        raise InputError(f"no repository named {name!r}", where=str(root), hint="see 'conary repo list'")
    return path, _load_repo(path)


def remove_repo(root: str | os.PathLike[str], name: str, *, dry_run: bool = False) -> Repo:
    """Forget repository NAME: its configuration and its synced index. Installed packages stay,
    and so do package files already downloaded into the package cache (`gc` clears it)."""
    root = Path(root)
    path, repo = _configured(root, name)
    if dry_run:
        return repo
    # the configuration goes first: a crash between the two leaves only an unused synced copy
    path.unlink()
    fsync_dir(path.parent)
    state = _state_dir(root, name)
    if state.is_dir():
        shutil.rmtree(state)
        fsync_dir(state.parent)
    return repo


def set_repo_enabled(
    root: str | os.PathLike[str], name: str, enabled: bool, *, dry_run: bool = False
) -> tuple[Repo, bool]:
    """Enable or disable repository NAME; returns it and whether that changed anything."""
    path, repo = _configured(Path(root), name)
    if repo.enabled == enabled:
        return repo, False
    repo = Repo(repo.name, repo.url, enabled)
    if not dry_run:
        atomic_write_bytes(
            path, tomli_w.dumps({"name": repo.name, "url": repo.url, "enabled": enabled}).encode()
        )
    return repo, True


def _load_repo(path: Path) -> Repo:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        name = data.get("name", path.stem)
        url = data["url"]
        enabled = data.get("enabled", True)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError) as err:
        raise InputError(f"malformed repository file: {err}", where=str(path))
    if not isinstance(url, str) or not isinstance(enabled, bool) or name != path.stem:
        raise InputError(
            "malformed repository file: expected name = file name, url (string), enabled (bool)",
            where=str(path),
        )
    return Repo(name, url.rstrip("/") if url != "/" else url, enabled)


def list_repos(root: str | os.PathLike[str]) -> list[Repo]:
    directory = Path(root) / REPOS_DIR
    if not directory.is_dir():
        return []
    return [_load_repo(p) for p in sorted(directory.glob("*.toml")) if not p.name.startswith(".")]


def enabled_repos(root: str | os.PathLike[str]) -> list[Repo]:
    return [r for r in list_repos(root) if r.enabled]


# --- transport ---------------------------------------------------------------------------------


def _http_get(url: str, *, where: str, limit: int | None = None, into: Path | None = None) -> bytes:
    """GET URL with timeouts. Returns the body, or streams it into INTO (atomically) and returns b""."""
    import requests  # on use: ~60 ms at every start-up, and only fetching from a repository needs it

    try:
        # A proxy from the environment must not capture a repository on this very machine.
        local = urlsplit(url).hostname in ("localhost", "127.0.0.1", "::1")
        proxies = {"http": None, "https": None} if local else None
        with requests.get(
            url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), proxies=proxies
        ) as response:
            if response.status_code != 200:
                what = "not found" if response.status_code == 404 else "request failed"
                raise RepoError(
                    f"{what}: HTTP {response.status_code} for {url}",
                    where=where,
                    hint="check the repository URL and that the repository was indexed ('conary repo index')",
                )
            if into is None:
                body = bytearray()
                for block in response.iter_content(1 << 16):
                    body += block
                    if limit is not None and len(body) > limit:
                        raise RepoError(f"response larger than {limit} bytes from {url}", where=where)
                return bytes(body)
            with atomic_writer(into) as handle:
                written = 0
                for block in response.iter_content(1 << 20):
                    written += len(block)
                    if limit is not None and written > limit:
                        raise RepoError(
                            f"response larger than the {limit} bytes expected from {url}", where=where
                        )
                    handle.write(block)
            return b""
    except requests.Timeout:
        raise RepoError(f"timed out fetching {url}", where=where, hint="check the network and the server")
    except requests.ConnectionError as err:
        reason = _root_cause(err)
        raise RepoError(
            f"cannot reach {url}: {reason}", where=where, hint="check the URL and that the server is running"
        )
    except requests.RequestException as err:
        raise RepoError(f"cannot fetch {url}: {err}", where=where)


def _root_cause(err: BaseException) -> str:
    while err.__context__ is not None and err.__context__ is not err:
        err = err.__context__
    return str(err) or type(err).__name__


def _read_local(path: Path, *, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RepoError(
            f"{path.name} not found in {path.parent}",
            where=where,
            hint=f"create it with 'conary repo index {path.parent} --key KEY'",
        )


def _fetch_index_bytes(repo: Repo) -> tuple[bytes, bytes]:
    where = f"repository {repo.name}"
    if repo.is_http:
        data = _http_get(f"{repo.url}/{INDEX_NAME}", where=where, limit=MAX_INDEX_BYTES)
        signature = _http_get(f"{repo.url}/{SIGNATURE_NAME}", where=where, limit=1 << 16)
        return data, signature
    base = Path(repo.url)
    return _read_local(base / INDEX_NAME, where=where), _read_local(base / SIGNATURE_NAME, where=where)


# --- sync and index loading --------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    repo: Repo
    packages: int
    signer_key_id: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.repo.name, "packages": self.packages, "signer": self.signer_key_id}


def sync_repo(
    root: str | os.PathLike[str],
    repo: Repo,
    keys: Sequence[PublicKey] | None = None,
    *,
    dry_run: bool = False,
) -> RepoIndex:
    """Fetch REPO's index, verify it against ROOT's trusted keys and store the verified copy
    (under DRY_RUN: fetch and verify only)."""
    root = Path(root)
    keys = trusted_keys(root) if keys is None else keys
    data, signature = _fetch_index_bytes(repo)
    index = verify_index(data, signature, keys, where=f"repository {repo.name} ({repo.url})")
    if dry_run:
        return index
    state = _state_dir(root, repo.name)
    # Signature first, then index: a crash between leaves a pair that fails to verify (and is
    # refetched), never a stale pair that verifies.
    atomic_write_bytes(state / SIGNATURE_NAME, signature)
    atomic_write_bytes(state / INDEX_NAME, data)
    return index


def sync(
    root: str | os.PathLike[str], names: Sequence[str] = (), *, dry_run: bool = False
) -> list[SyncResult]:
    """Sync the named repositories (default: every enabled one).

    Every repository is tried; a failure keeps that repository's previous verified copy and is
    raised (all failures in one error) after the others were synced."""
    root = Path(root)
    repos = list_repos(root)
    if names:
        known = {r.name: r for r in repos}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(f"no repository named {unknown[0]!r}", hint="see 'conary repo list'")
        repos = [known[n] for n in names]
    else:
        repos = [r for r in repos if r.enabled]
    keys = trusted_keys(root)
    results = []
    failures: list[ConaryError] = []
    for repo in repos:
        try:
            index = sync_repo(root, repo, keys, dry_run=dry_run)
        except ConaryError as err:
            failures.append(err)
            continue
        results.append(SyncResult(repo, len(index.entries), index.signer_key_id))
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise RepoError(
            "; ".join(err.render() for err in failures),
            where="repo sync",
            hint=f"{len(results)} other repositories were synced",
        )
    return results


def load_index(root: str | os.PathLike[str], repo: Repo, keys: Sequence[PublicKey]) -> RepoIndex:
    """REPO's verified index: live for directories, the synced copy (re-verified) for http."""
    root = Path(root)
    if not repo.is_http:
        data, signature = _fetch_index_bytes(repo)
        return verify_index(data, signature, keys, where=f"repository {repo.name} ({repo.url})")
    state = _state_dir(root, repo.name)
    try:
        data = (state / INDEX_NAME).read_bytes()
        signature = (state / SIGNATURE_NAME).read_bytes()
    except FileNotFoundError:
        return sync_repo(root, repo, keys)
    try:
        return verify_index(data, signature, keys, where=f"synced index of repository {repo.name}")
    except RepoIndexError:
        # A half-written or since-distrusted copy: fetch afresh, which verifies again.
        return sync_repo(root, repo, keys)


# --- packages ----------------------------------------------------------------------------------


def fetch_package(
    root: str | os.PathLike[str], repo: Repo, entry: IndexEntry, keys: Sequence[PublicKey]
) -> Path:
    """A local path to ENTRY's .ccs, checked against the index and verified against KEYS."""
    root = Path(root)
    where = f"{entry.nevra} from repository {repo.name}"
    if repo.is_http:
        cache = layout(root).package_cache
        path = cache / entry.filename
        if not (path.is_file() and path.stat().st_size == entry.size and file_sha256(path) == entry.sha256):
            _http_get(f"{repo.url}/{quote(entry.filename)}", where=where, limit=entry.size, into=path)
    else:
        path = Path(repo.url) / entry.filename
        if not path.is_file():
            raise RepoError(
                f"{entry.filename} is listed in the index but missing from {repo.url}",
                where=where,
                hint=f"re-create the index with 'conary repo index {repo.url}'",
            )
    size = path.stat().st_size
    digest = file_sha256(path)
    if size != entry.size or digest != entry.sha256:
        if repo.is_http:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
        raise RepoError(
            f"{entry.filename} does not match the index (sha256 {digest}, index says {entry.sha256})",
            where=where,
            hint="the repository changed or was tampered with; run 'conary repo sync' and retry",
        )
    try:
        with open_package(path, trusted_keys=list(keys)) as package:
            manifest = package.manifest
    except CcsError as err:
        what = f"{err.where}: {err.what}" if err.where else err.what
        raise RepoError(f"package {entry.filename} refused: {what}", where=str(path), hint=err.hint)
    if (manifest.name, manifest.version, manifest.release, manifest.arch) != (
        entry.name,
        entry.version,
        entry.release,
        entry.arch,
    ):
        raise RepoError(
            f"{entry.filename} holds {manifest.nevra}, not {entry.nevra} as the index says",
            where=where,
            hint="re-create the repository index",
        )
    return path
