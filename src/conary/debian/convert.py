"""Converting a Debian binary package into a CCS package.

The files come from data.tar, as ``dpkg-deb -x`` would extract them: paths, types, modes (setuid
bits included), symlink targets, and owners from the tar headers (numeric ids; Debian's packages are
almost all root-owned). Hard links become separate files with the same content, which the CCS format
stores once. The package's identity and requirements come from the control file (see
conary.debian.relations); the maintainer scripts are recorded in the provenance and never run.

The output is a function of the .deb's bytes: SOURCE_DATE_EPOCH is the newest mtime in data.tar
(what Debian's reproducible builds set from the changelog), so importing the same .deb twice gives
the same package bytes, on any machine.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conary.ccs import Dependency, PackageMeta, build_package
from conary.ccs.elfinfo import ELF_MAGIC, parse_elf
from conary.ccs.keys import SigningKey
from conary.ccs.tarfmt import MAX_MTIME
from conary.debian import relations
from conary.debian.debfile import DebControl, DebFile
from conary.debian.errors import DebFormatError
from conary.fsutil import fsync_dir

# Debian architecture -> Conary's name for it; "all" packages are noarch.
DEBIAN_ARCHES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "riscv64": "riscv64",
    "i386": "i686",
    "armhf": "armhf",
    "armel": "armel",
    "ppc64el": "ppc64le",
    "s390x": "s390x",
    "all": "noarch",
}
_BLOCK = 1 << 20
# Debian architecture -> the ELF ABI name of its programs (conary.ccs.elfinfo's names).
_NATIVE_ABI = {"amd64": "x86-64", "arm64": "aarch64", "riscv64": "riscv64", "i386": "i386", "armhf": "arm"}
# The machine the seeds run on: "all" packages hold programs for it, or data for another machine.
BUILD_ABI = "x86-64"
# A Debian package is what dpkg installs whole: headers of a -dev package are its point, so they are
# not split into an optional devel component. Only documentation is optional (as dpkg's path-exclude
# makes it in minimal Debian images); /etc is config.
DEB_COMPONENTS = {
    "config": ["etc/**"],
    "doc": ["usr/share/doc/**", "usr/share/man/**", "usr/share/info/**"],
    "runtime": ["**"],
}


@dataclass(frozen=True)
class ImportedPackage:
    """One converted package: the .ccs written, where it came from, and what was not carried over."""

    path: Path
    name: str
    debian_version: str
    source: Path
    scripts: tuple[str, ...]

    @property
    def warning(self) -> str | None:
        """The one warning for this package: its maintainer scripts, which were not run."""
        if not self.scripts:
            return None
        return (
            f"{self.name}: maintainer scripts not run: {', '.join(self.scripts)} "
            "(recorded in the package's provenance)"
        )


def split_version(debian_version: str) -> tuple[str, str, str]:
    """(epoch, version, release) of a Debian version: ``1:2.36-9+deb12u4`` -> ("1", "2.36", "9+deb12u4").

    A native version (no revision) gets release "0". Characters CCS does not allow become "_".
    """
    epoch, sep, rest = debian_version.partition(":")
    if not sep:
        epoch, rest = "", debian_version
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, "0"
    return epoch, _ident(upstream), _ident(revision)


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._+~^-" else "_" for c in text) or "0"


def conary_arch(debian_arch: str) -> str:
    return DEBIAN_ARCHES.get(debian_arch, _ident(debian_arch))


def package_meta(control: DebControl) -> PackageMeta:
    _, version, release = split_version(control.version)
    summary, _, description = control.get("Description").partition("\n")
    # Debian's extended description: one leading space per line, " ." for an empty line.
    body = "\n".join("" if line.strip() == "." else line[1:] for line in description.splitlines())
    return PackageMeta(
        name=control.package,
        version=version,
        release=release,
        arch=conary_arch(control.architecture),
        summary=summary.strip(),
        description=body.strip(),
        homepage=control.get("Homepage"),
    )


def import_deb(
    deb_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    signing_key: SigningKey | str | os.PathLike[str],
    *,
    workers: int | None = None,
    omit: Collection[str] = (),
) -> ImportedPackage:
    """Convert one .deb into ``<output_dir>/<name>-<version>-<release>.<arch>.ccs``.

    Requirements are Debian's Depends and Pre-Depends, plus the soname and interpreter requirements
    scanned from the ELF files. Scanned file and command requirements (from `#!` lines) are left
    out: Debian's relations are the package's contract, and a script's `#!/usr/local/bin/python`
    in an example is not a dependency. OMIT names packages whose requirements are left out too (a
    root where another package does their job, such as busybox for dpkg's Essential tools); each
    one left out is recorded in the provenance."""
    deb = DebFile(deb_path)
    control = deb.control()
    meta = package_meta(control)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    native = _NATIVE_ABI.get(control.architecture, BUILD_ABI)
    with tempfile.TemporaryDirectory(prefix=".deb-import-", dir=output) as scratch:
        tree = Path(scratch) / "tree"
        tree.mkdir()
        extracted = extract_data(deb, tree, native_abi=native)
        requires, dropped = relations.requirements(control.get("Pre-Depends"), control.get("Depends"))
        omitted = sorted({str(r) for r in requires if r.name in omit})
        requires = [r for r in requires if r.name not in omit]
        provides = relations.provides(control.get("Provides"))
        # Each package is written in its own directory, then renamed into place: conversions run in
        # parallel into one output directory, and a build's scratch space is its own.
        path = build_package(
            tree,
            meta,
            output_dir=Path(scratch) / "out",
            signing_key=signing_key,
            component_rules=DEB_COMPONENTS,
            provenance=_provenance(deb, control, dropped, omitted),
            source_date_epoch=min(extracted.newest_mtime, MAX_MTIME),
            split_debug=False,
            preserve_owner=extracted.owners_kept,
            workers=workers,
            extra_provides=provides,
            extra_requires=requires,
            drop_requires=[
                Dependency("file", "*"),
                Dependency("binary", "*"),
                *(Dependency("interpreter", p) for p in extracted.foreign_interpreters),
            ],
        )
        final = output / path.name
        os.rename(path, final)
        fsync_dir(output)
    return ImportedPackage(final, meta.name, control.version, deb.path, tuple(sorted(control.scripts)))


def _provenance(
    deb: DebFile, control: DebControl, dropped: list[str], omitted: list[str]
) -> dict[str, object]:
    fields = {k: v for k, v in control.fields.items() if k != "Description"}
    provenance: dict[str, object] = {
        "builder": "conary import deb",
        "debian.file": deb.path.name,
        "debian.sha256": deb.sha256,
        "debian.control": fields,
        "debian.scripts_not_run": dict(control.scripts),
    }
    if control.triggers:
        provenance["debian.triggers"] = control.triggers
    if control.conffiles:
        provenance["debian.conffiles"] = list(control.conffiles)
    if dropped:
        provenance["debian.alternatives_not_required"] = dropped
    if omitted:
        provenance["debian.requirements_omitted"] = omitted
    return provenance


def _member_path(info: tarfile.TarInfo, where: str) -> str | None:
    """The member's path relative to the package root; None for the root itself."""
    name = info.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return None
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or "." in parts:
        raise DebFormatError(f"unsafe path {info.name!r} in data.tar", where=where)
    return name


@dataclass(frozen=True)
class Extracted:
    newest_mtime: int
    # Owners are set only when running as root; without root every entry must be root-owned,
    # which then is what the package records.
    owners_kept: bool
    # ELF interpreters of programs for another machine than the package's (a cross toolchain's
    # target libraries): they run only under the target's emulator, never in this root.
    foreign_interpreters: frozenset[str]


def extract_data(deb: DebFile, tree: Path, *, native_abi: str = BUILD_ABI) -> Extracted:
    """Extract data.tar into *tree* as ``dpkg-deb -x`` would."""
    as_root = os.geteuid() == 0
    newest = 0
    foreign: set[str] = set()
    native: set[str] = set()
    dirs: list[tuple[Path, int, int, int]] = []
    for info, tar in deb.data_members():
        rel = _member_path(info, deb.where)
        newest = max(newest, int(info.mtime))
        if rel is None:
            continue
        target = tree / rel
        if not as_root and (info.uid or info.gid):
            raise DebFormatError(
                f"{rel} is owned by {info.uid}:{info.gid}",
                where=deb.where,
                hint="import packages with non-root owners as root, so that the owners are kept",
            )
        _check_parent(tree, target, deb.where)
        if info.isdir():
            target.mkdir(exist_ok=True)
            dirs.append((target, info.mode & 0o7777, info.uid, info.gid))
            continue
        if os.path.lexists(target):
            if target.is_dir() and not target.is_symlink():
                raise DebFormatError(f"{rel} is both a directory and a file in data.tar", where=deb.where)
            target.unlink()
        if info.isreg():
            reader = tar.extractfile(info)
            data = reader.read() if reader is not None else b""
            if data[:4] == ELF_MAGIC:
                elf = parse_elf(data)
                if elf is not None and elf.interpreter:
                    (native if elf.abi == native_abi else foreign).add(elf.interpreter)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if as_root:
                    os.fchown(fd, info.uid, info.gid)
                # after chown, which clears setuid and setgid bits
                os.fchmod(fd, info.mode & 0o7777)
            finally:
                os.close(fd)
        elif info.issym():
            os.symlink(info.linkname, target)
            if as_root:
                os.lchown(target, info.uid, info.gid)
        elif info.islnk():
            source = _member_path(tarfile.TarInfo(info.linkname), deb.where)
            source_path = tree / source if source else None
            if source_path is None or not source_path.is_file() or source_path.is_symlink():
                raise DebFormatError(
                    f"hard link {rel} to {info.linkname!r}, which is not an earlier regular file",
                    where=deb.where,
                )
            os.link(source_path, target)
        else:
            kind = "device" if info.ischr() or info.isblk() else "fifo" if info.isfifo() else "special file"
            raise DebFormatError(
                f"{rel} is a {kind}, which a CCS package cannot hold",
                where=deb.where,
                hint="such packages need a scriptlet that creates the node; they are not imported",
            )
    # Directory modes last, deepest first, so read-only directories could be filled.
    for path, mode, uid, gid in reversed(dirs):
        if as_root:
            os.lchown(path, uid, gid)
        os.chmod(path, mode)
    return Extracted(newest, as_root, frozenset(foreign - native))


def _check_parent(tree: Path, target: Path, where: str) -> None:
    """Make *target*'s parent directories; refuse a member below a symlink, since writing through
    it could leave the tree. Every directory in the tree is a real one made here, and a later member
    cannot replace it, so only the nearest existing ancestor needs a look."""
    parent = target.parent
    missing = False
    while parent != tree and not os.path.lexists(parent):
        parent, missing = parent.parent, True
    if parent != tree and os.path.islink(parent):
        raise DebFormatError(f"{target.relative_to(tree)} lies below a symlink in data.tar", where=where)
    if missing:
        target.parent.mkdir(parents=True, exist_ok=True)
