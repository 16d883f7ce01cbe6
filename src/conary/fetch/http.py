"""Downloads over http(s): timeouts, a few retries for transient failures, a progress bar on stderr.

Retried (3 attempts, backoff 0.5 s, 1 s): 5xx and 429 replies, read timeouts, connections dropped
mid-transfer. Not retried: 4xx replies, refused connections, unresolvable hosts and connect timeouts —
retrying those only makes a machine without a route wait longer before it moves on.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from conary.fetch.cache import SourceCache
from conary.fetch.checksum import Checksum
from conary.fetch.errors import SourceUnavailable

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
ATTEMPTS = 3
BACKOFF = 0.5
_BLOCK = 1 << 16
_USER_AGENT = "conary-fetch"


class _Transient(Exception):
    pass


class HttpDownloader:
    def __init__(
        self,
        *,
        progress: bool | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
    ) -> None:
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.timeout = (connect_timeout, read_timeout)
        self.attempts = attempts
        self.backoff = backoff
        self._session = requests.Session()
        self._session.headers["User-Agent"] = _USER_AGENT

    def download(self, url: str, cache: SourceCache, checksum: Checksum) -> Path:
        """Stream *url* into the cache under *checksum*. Raises SourceUnavailable or ChecksumMismatchError."""
        last = "no attempt"
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._once(url, cache, checksum)
            except _Transient as exc:
                last = str(exc)
        raise SourceUnavailable(f"{last}, after {self.attempts} attempts")

    def _once(self, url: str, cache: SourceCache, checksum: Checksum) -> Path:
        try:
            response = self._session.get(url, stream=True, timeout=self.timeout, allow_redirects=True)
        except requests.exceptions.ReadTimeout:
            raise _Transient(f"read timed out after {self.timeout[1]:g} s")
        except requests.exceptions.ConnectTimeout:
            raise SourceUnavailable(f"unreachable: connect timed out after {self.timeout[0]:g} s")
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"unreachable: {short_reason(exc)}")
        with response:
            if response.status_code >= 500 or response.status_code == 429:
                raise _Transient(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise SourceUnavailable(str(response.status_code))
            total = int(response.headers.get("Content-Length") or 0) or None
            try:
                return cache.add_stream(self._chunks(response, url, total), checksum, origin=url)
            except requests.exceptions.Timeout:
                raise _Transient(f"read timed out after {self.timeout[1]:g} s")
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as exc:
                raise _Transient(f"transfer broke off: {short_reason(exc)}")

    def _chunks(self, response: requests.Response, url: str, total: int | None) -> Iterator[bytes]:
        if not self.progress:
            yield from response.iter_content(_BLOCK)
            return
        # on use: rich.progress adds ~40 ms to every start-up, and only a terminal draws the bar
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        name = url.rsplit("/", 1)[-1] or url
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(name, total=total)
            for block in response.iter_content(_BLOCK):
                bar.advance(task, len(block))
                yield block


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def short_reason(exc: BaseException) -> str:
    """The useful end of a requests/urllib3 error chain, e.g. 'Connection refused'."""
    text = str(exc)
    if "Failed to resolve" in text or "Name or service not known" in text:
        found = _ERRNO.findall(text)
        return f"cannot resolve host ({found[-1].strip()})" if found else "cannot resolve host"
    found = _ERRNO.findall(text)
    if found:
        return found[-1].strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
