"""A small Debian source archive on 127.0.0.1 for the Debian provider's tests.

It has the layout of Debian's archive (dists/<suite>/main/source/Sources, pool/main/<p>/<package>/),
so real apt-get reads it through the provider's private apt state; an apt directory with one
``[trusted=yes]`` entry stands in for the machine's /etc/apt. Only the archive's host is replaced.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from helpers_fetch import MirrorServer


def orig_tarball(package: str, upstream: str) -> bytes:
    """Bytes that stand for an orig tarball (apt only moves them; nothing unpacks them)."""
    return f"{package} {upstream} orig tarball\n".encode()


class DebianArchive:
    def __init__(self, server: MirrorServer, root: Path) -> None:
        self.server = server
        self.url = server.url + "debian"
        self.suites: dict[str, list[str]] = {}
        self.etc_apt = root / "etc-apt"
        (self.etc_apt / "sources.list.d").mkdir(parents=True)

    def add(
        self,
        suite: str,
        package: str,
        version: str,
        *,
        orig: bytes | None = None,
        in_pool: bool = True,
        binary: str | None = None,
    ) -> str:
        """Publish *package* at Debian *version* in *suite*; returns the orig tarball's file name.
        *in_pool* False lists the orig tarball in the index but leaves it out of the pool."""
        upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
        plain = version.split(":", 1)[-1]
        pool = f"pool/main/{package[0]}/{package}"
        dsc = f"Format: 3.0 (quilt)\nSource: {package}\nVersion: {version}\n"
        files = {
            f"{package}_{plain}.dsc": dsc.encode(),
            f"{package}_{upstream}.orig.tar.gz": orig_tarball(package, upstream) if orig is None else orig,
            f"{package}_{plain}.debian.tar.xz": f"{package} {version} packaging\n".encode(),
        }
        sums = {algo: "".join(
            f" {hashlib.new(algo, data).hexdigest()} {len(data)} {name}\n" for name, data in files.items()
        ) for algo in ("md5", "sha256")}  # fmt: skip
        self.suites.setdefault(suite, []).append(
            f"Package: {package}\nBinary: {binary or package}\nVersion: {version}\n"
            "Maintainer: Nobody <nobody@example.org>\nArchitecture: any\nFormat: 3.0 (quilt)\n"
            f"Directory: {pool}\nFiles:\n{sums['md5']}Checksums-Sha256:\n{sums['sha256']}"
        )
        for name, data in files.items():
            if in_pool or ".orig." not in name:
                self.server.add(f"debian/{pool}/{name}", data)
        self.server.add(f"debian/dists/{suite}/main/source/Sources", "\n".join(self.suites[suite]).encode())
        return f"{package}_{upstream}.orig.tar.gz"

    def withdraw(self, suite: str, package: str) -> None:
        """Drop every version of *package* from *suite*'s index and its files from the pool, as the
        archive does when a point release replaces a version."""
        self.suites[suite] = [s for s in self.suites[suite] if not s.startswith(f"Package: {package}\n")]
        self.server.add(f"debian/dists/{suite}/main/source/Sources", "\n".join(self.suites[suite]).encode())
        pool = f"/debian/pool/main/{package[0]}/{package}/"
        for path in [p for p in self.server.files if p.startswith(pool)]:
            del self.server.files[path]

    def use_suites(self, *suites: str) -> Path:
        """Point the stand-in /etc/apt at *suites* of this archive (as a machine's deb lines)."""
        lines = "".join(f"deb [trusted=yes] {self.url} {suite} main\n" for suite in suites)
        (self.etc_apt / "sources.list").write_text(lines)
        return self.etc_apt
