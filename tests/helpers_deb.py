"""Shared by the Debian import tests: building .deb files, comparing a CCS package with the tree
`dpkg-deb -x` extracts, and getting a seed lock's files without breaking on Debian's next update."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

from conary.ccs import open_package
from conary.debian.errors import PinnedFileGone
from conary.debian.lock import SeedLock, read_lock, resolve_lock, write_lock
from conary.debian.seed import download_lock
from conary.fetch.cache import SourceCache


def build_deb(
    root: Path,
    out: Path,
    control: str,
    *,
    compression: str = "xz",
    scripts: dict[str, str] | None = None,
    conffiles: list[str] | None = None,
) -> Path:
    """A real .deb of the tree *root* built by dpkg-deb with root:root owners (unless the tree's
    owners are kept with --root-owner-group unset: it is set here, like Debian's own builds)."""
    debian = root / "DEBIAN"
    debian.mkdir(exist_ok=True)
    (debian / "control").write_text(control)
    for name, text in (scripts or {}).items():
        (debian / name).write_text(text)
        os.chmod(debian / name, 0o755)
    if conffiles:
        (debian / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), str(out)],
        check=True,
        capture_output=True,
        env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000"),
    )
    return out


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    """An ar archive (deb(5)'s container) with these members, for hand-made malformed packages."""
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def dpkg_tree(deb: Path, dest: Path) -> dict[str, tuple]:
    """What `dpkg-deb -x` extracts: path -> (type, mode, uid, gid, sha256 or symlink target)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, capture_output=True)
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(dest).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = ("symlink", 0o777, st.st_uid, st.st_gid, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", st.st_mode & 0o7777, st.st_uid, st.st_gid, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                tree[rel] = ("file", st.st_mode & 0o7777, st.st_uid, st.st_gid, digest)
    return tree


def ccs_tree(ccs: Path) -> dict[str, tuple]:
    """The same view of a CCS package's manifest, with each file's content hashed from its objects."""
    with open_package(ccs, None) as pkg:
        tree = {}
        for entry in pkg.manifest.files:
            if entry.type == "file":
                digest = hashlib.sha256(pkg.read_file(entry)).hexdigest()
                assert digest == entry.sha256
                tree[entry.path] = ("file", entry.mode, entry.uid, entry.gid, digest)
            elif entry.type == "symlink":
                tree[entry.path] = ("symlink", 0o777, entry.uid, entry.gid, entry.target)
            else:
                tree[entry.path] = ("dir", entry.mode, entry.uid, entry.gid, "")
        return tree


def lock_files(
    lock_file: Path, cache: SourceCache, state_dir: Path, tmp: Path, report: list[str]
) -> tuple[SeedLock, list[Path]]:
    """The .debs a lock pins, from the cache when it has them all, else downloaded. When Debian has
    replaced a pinned file, the lock is resolved again into a temporary copy (the shipped lock
    stays as it is). *report* gets one line saying which of the three happened."""
    lock = read_lock(lock_file)
    if all(cache.path_for(f"sha256:{d.sha256}") for d in lock.debs):
        report.append(f"{lock_file.name}: every pinned .deb was in the cache")
        return lock, download_lock(lock, cache, state_dir=state_dir)
    try:
        paths = download_lock(lock, cache, state_dir=state_dir)
        report.append(f"{lock_file.name}: downloaded the pinned .debs")
        return lock, paths
    except PinnedFileGone as gone:
        fresh = resolve_lock(
            lock.name, lock.packages, suite=lock.suite, architecture=lock.architecture, state_dir=state_dir
        )
        copy = write_lock(fresh, tmp / lock_file.name)
        report.append(f"{lock_file.name}: {gone.what}; refreshed into the temporary copy {copy}")
        return fresh, download_lock(fresh, cache, state_dir=state_dir)
