"""Mirrors: places that may hold a source, looked up by checksum, then by file name.

Both kinds use one layout, which is also the source cache's layout::

    <base>/<algo>/<hexdigest>     by checksum, e.g. <base>/sha256/31e0…516b
    <base>/<filename>             by file name, e.g. <base>/hello-2.10.tar.gz

Mirrors come from ``--mirror`` (repeatable; tried first, in order) and from the mirror config file
(``$XDG_CONFIG_HOME/conary/mirrors.toml``, default ``~/.config/conary/mirrors.toml``)::

    [[mirror]]
    url = "https://sources.example.org/conary/"    # http(s) base URL

    [[mirror]]
    url = "/srv/conary-sources"                    # a directory (or file:///srv/conary-sources)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from conary.errors import InputError
from conary.fetch.checksum import Checksum

_MIRROR_KEYS = {"url"}


@dataclass(frozen=True)
class DirectoryMirror:
    root: Path

    def describe(self) -> str:
        return f"mirror {self.root}"

    def locations(self, checksum: Checksum, filename: str | None) -> list[str]:
        found = [str(self.root / checksum.algo / checksum.hexdigest)]
        if filename:
            found.append(str(self.root / filename))
        return found


@dataclass(frozen=True)
class HttpMirror:
    base_url: str

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")

    def describe(self) -> str:
        return f"mirror {self.base_url}"

    def locations(self, checksum: Checksum, filename: str | None) -> list[str]:
        found = [f"{self.base_url}{checksum.algo}/{checksum.hexdigest}"]
        if filename:
            found.append(self.base_url + quote(filename))
        return found


Mirror = DirectoryMirror | HttpMirror


def parse_mirror(spec: str, *, base_dir: Path | None = None) -> Mirror:
    """A mirror from a ``--mirror`` value or a config ``url``: http(s) URL, file: URL or directory path.

    A relative directory is taken relative to *base_dir* (the config file's directory), else the
    current directory.
    """
    text = spec.strip()
    if not text:
        raise InputError("empty mirror", hint="give an http(s) URL or a directory")
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return HttpMirror(text)
    if scheme == "file":
        return DirectoryMirror(Path(unquote(urlsplit(text).path)))
    if scheme and len(scheme) > 1:
        raise InputError(
            f"unsupported mirror '{spec}'", hint="a mirror is an http(s) URL, a file: URL or a directory"
        )
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return DirectoryMirror(path)


def default_mirror_config_path() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "conary" / "mirrors.toml"


def load_mirror_config(path: str | os.PathLike[str] | None = None) -> list[Mirror]:
    """Mirrors listed in the config file, in order. No file (at the default path) means no mirrors."""
    explicit = path is not None
    config = Path(path) if explicit else default_mirror_config_path()
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise InputError("mirror config not found", where=str(config))
        return []
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", where=str(config))
    unknown = set(data) - {"mirror"}
    if unknown:
        raise InputError(
            f"unknown key '{sorted(unknown)[0]}'", where=str(config), hint="use [[mirror]] url = ..."
        )
    entries = data.get("mirror", [])
    if not isinstance(entries, list):
        raise InputError("'mirror' must be an array of tables", where=str(config), hint="write [[mirror]]")
    mirrors: list[Mirror] = []
    for index, entry in enumerate(entries):
        where = f"{config}: mirror[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise InputError('a mirror needs url = "..."', where=where)
        extra = set(entry) - _MIRROR_KEYS
        if extra:
            raise InputError(f"unknown key '{sorted(extra)[0]}'", where=where, hint="a mirror has only 'url'")
        mirrors.append(parse_mirror(entry["url"], base_dir=config.parent))
    return mirrors


def configured_mirrors(
    cli_mirrors: Sequence[str] = (), config_path: str | os.PathLike[str] | None = None
) -> list[Mirror]:
    """``--mirror`` values first (in order), then the config file's mirrors."""
    return [parse_mirror(spec) for spec in cli_mirrors] + load_mirror_config(config_path)
