"""Fetching sources: a content-addressed cache, mirrors, http(s), local files and Debian's source archive.

A checksum names the bytes; a URL only says where they might be. Typical use::

    from conary.fetch import make_fetcher
    fetcher = make_fetcher(args.mirror, offline=args.offline)
    path = fetcher.fetch(recipe.source.archive, recipe.source.checksum,
                         recipe_dir=recipe_path.parent, debian=recipe.source.debian)

See docs/sources.md for the lookup order, mirror layout and config, and the recipe's ``debian`` key.
"""

from __future__ import annotations

from conary.fetch.cache import SourceCache, Substitute, default_cache_dir
from conary.fetch.checksum import DIGEST_SIZES, Checksum, digest_file
from conary.fetch.debian import DebianSourceProvider, DebianSpec, derive_source_entries
from conary.fetch.errors import ChecksumMismatchError, FetchError
from conary.fetch.fetcher import Fetched, Fetcher, filename_from_url, local_path, make_fetcher
from conary.fetch.mirrors import (
    DirectoryMirror,
    HttpMirror,
    Mirror,
    configured_mirrors,
    default_mirror_config_path,
    load_mirror_config,
    parse_mirror,
)

__all__ = [
    "DIGEST_SIZES",
    "Checksum",
    "ChecksumMismatchError",
    "DebianSourceProvider",
    "DebianSpec",
    "DirectoryMirror",
    "FetchError",
    "Fetched",
    "Fetcher",
    "HttpMirror",
    "Mirror",
    "SourceCache",
    "Substitute",
    "configured_mirrors",
    "default_cache_dir",
    "default_mirror_config_path",
    "derive_source_entries",
    "digest_file",
    "filename_from_url",
    "load_mirror_config",
    "local_path",
    "make_fetcher",
    "parse_mirror",
]
