"""Building a disk: a runtime-made root, an ESP tree, repart.d from templates, systemd-repart offline.

    root  ─ the runtime installs the definition's packages into a fresh root (its DB stays inside),
            or the caller gives a root (the bootstrap's)
    esp   ─ systemd-boot as the removable-media boot file, loader.conf, one BLS entry, the kernel
    repart.d ─ images/*.conf.j2 rendered for the target (conary.image.templates)
    disk  ─ systemd-repart --offline=yes in a user namespace: the caller's uid is root inside, so the
            files are root:root in the image without the host's root

Everything that can be checked is checked before anything is written: the definition, the packages it
names, the tools. The disk is written beside OUTPUT and renamed over it once complete, so OUTPUT is
either the old disk or the new one. Reproducible: repart's --seed is derived from the inputs (or
given), every mtime in the trees is clamped to SOURCE_DATE_EPOCH, and the mkfs tools get it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conary.ccs import PublicKey, load_public_key, open_package
from conary.ccs.keys import default_key_path
from conary.errors import ConaryError, InputError
from conary.fsutil import require_tool
from conary.image.definition import ImageDefinition
from conary.image.esp import make_esp_image, make_esp_tree, write_file
from conary.image.rootfs import clamp_mtimes, make_root_image
from conary.image.templates import RenderContext, render_definitions
from conary.image.tools import Repart, find_repart, image_tools, require_systemd_boot
from conary.image.userns import WORK, run_tools
from conary.runtime import install_packages
from conary.runtime.keys import add_key
from conary.sandbox import Bind
from conary.targets import Target

# A fixed namespace for the seeds derived from an image's inputs.
SEED_NAMESPACE = uuid.UUID("6c1f2d1e-8a54-4c52-9d4b-3b1f0e7a2c11")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    path: Path
    format: str
    seed: str
    kernel: str  # the kernel's version, from /boot/vmlinuz-VERSION
    cmdline: str
    packages: tuple[str, ...]  # name-version-release of what the runtime installed (empty for --root)


@dataclass(frozen=True)
class PackageFile:
    name: str
    nevra: str
    path: Path
    content_root: str


def _package_files(items: Sequence[str | Path]) -> list[Path]:
    """.ccs files as given; a directory gives every .ccs in it."""
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files += sorted(path.glob("*.ccs"))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(
                "package file not found", where=str(path), hint="give .ccs files or directories of them"
            )
    return files


def select_packages(
    definition: ImageDefinition,
    items: Sequence[str | Path],
    keys: Sequence[PublicKey],
    extra: Sequence[str] = (),
) -> list[PackageFile]:
    """The package files the definition names, with EXTRA names, and what they require from among
    the given packages (all of them when it names none), verified.

    A name the definition lists that no given package provides is an error, raised before anything
    is written. A requirement no given package meets is left for the runtime's check to report."""
    found: dict[str, PackageFile] = {}
    deps: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {}
    for path in _package_files(items):
        with open_package(path, trusted_keys=list(keys)) as pkg:
            m = pkg.manifest
            entry = PackageFile(m.name, m.nevra, path, m.content_root)
            provides = tuple(d.key for d in m.provides)
            requires = tuple(d.key for d in m.requires)
        previous = found.get(entry.name)
        if previous is not None and previous.path != path:
            raise InputError(
                f"package {entry.name} is given twice ({previous.path.name} and {path.name})",
                where=str(path),
                hint="give one file per package",
            )
        found[entry.name] = entry
        deps[entry.name] = (provides, requires)
    named = tuple(dict.fromkeys((*definition.packages, *extra)))
    wanted = named or tuple(sorted(found))
    missing = [name for name in wanted if name not in found]
    if missing:
        where = str(definition.path or "image definition")
        raise InputError(
            f"package{'s' if len(missing) > 1 else ''} {', '.join(missing)} not among the given packages",
            where=f"{where}: packages",
            hint="cook it, or pass its .ccs (or a directory holding it) with --packages",
        )
    if not wanted:
        raise InputError("no packages to install", hint="name packages in the definition or pass --packages")
    return [found[name] for name in _with_requirements(list(wanted), deps)]


def _with_requirements(
    names: list[str], deps: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]]
) -> list[str]:
    """NAMES, then each package that first meets a requirement of those chosen (the provider whose
    name sorts first), until nothing more is met: an image names what it is for, not its libraries."""
    providers: dict[tuple[str, str], list[str]] = {}
    for name in sorted(deps):
        for key in deps[name][0]:
            providers.setdefault(key, []).append(name)
    chosen = list(names)
    met = {key for name in chosen for key in deps[name][0]}
    i = 0
    while i < len(chosen):
        for key in deps[chosen[i]][1]:
            if key in met or key not in providers:
                continue
            pick = providers[key][0]
            chosen.append(pick)
            met.update(deps[pick][0])
        i += 1
    return chosen


def trusted_keys(paths: Sequence[str | Path]) -> list[tuple[Path, PublicKey]]:
    """The keys packages must be signed by: the given .pub files, else the user's default key."""
    if not paths:
        default = Path(str(default_key_path()) + ".pub")
        if not default.is_file():
            raise InputError(
                "no key to trust for the image's packages",
                where=str(default),
                hint="pass --trust KEY.pub (the public key that signed the packages)",
            )
        paths = [default]
    return [(Path(p), load_public_key(p)) for p in paths]


def _kernel(root: Path) -> tuple[Path, str]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise InputError(
            f"the root needs exactly one kernel /boot/vmlinuz-VERSION, found {len(kernels)}",
            where=str(root / "boot"),
            hint="install the linux package into the root",
        )
    return kernels[0], kernels[0].name.removeprefix("vmlinuz-")


def kernel_cmdline(definition: ImageDefinition, target: Target) -> str:
    """The kernel command line: root by partition label, the target's console, the definition's extras.

    panic=-1 makes a kernel that cannot boot reboot at once, and image boot runs QEMU with
    -no-reboot, so a broken disk fails fast instead of waiting for the timeout."""
    mode = "ro" if definition.filesystem == "erofs" else "rw"
    parts = [
        f"root=PARTLABEL={root_label(target)}",
        f"rootfstype={definition.filesystem}",
        "rootwait",
        mode,
        f"console={target.qemu.console}",
        "panic=-1",
        definition.cmdline.strip(),
    ]
    return " ".join(p for p in parts if p)


def root_label(target: Target) -> str:
    return f"root-{target.arch}"


def derive_uuid(seed: str, what: str) -> str:
    """A UUID for one part of the image (a filesystem, a hash seed), fixed by the image's seed."""
    return str(uuid.uuid5(uuid.UUID(seed), what))


def tree_digest(tree: Path) -> str:
    """sha256 over the sorted (path, mode, size, link target) of a tree: the root's identity for the seed."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, tree)
            link = os.readlink(path) if os.path.islink(path) else ""
            h.update(f"{rel}\0{st.st_mode:o}\0{st.st_size}\0{link}\n".encode())
    return h.hexdigest()


def derive_seed(definition: ImageDefinition, target: Target, root_identity: str) -> str:
    fields = [target.arch, definition.format, str(definition.size), root_identity, definition.text]
    text = "\n".join(["conary-image-v1", *fields])
    return str(uuid.uuid5(SEED_NAMESPACE, hashlib.sha256(text.encode()).hexdigest()))


def run_repart(repart: Repart, work: Path, disk_name: str, seed: str, epoch: int, *, log: Path) -> None:
    """systemd-repart --offline=yes: the GPT and the partitions, their contents copied from WORK's images."""
    binary = str(repart.path)
    extra = []
    if not binary.startswith("/usr/"):
        extra.append(Bind(binary, "/run/conary-repart", readonly=True))
        binary = "/run/conary-repart"
    argv = [
        binary,
        "--offline=yes",
        "--empty=create",
        "--size=auto",
        "--dry-run=no",
        "--no-pager",
        f"--seed={seed}",
        f"--definitions={WORK}/repart.d",
        f"{WORK}/{disk_name}",
    ]
    env = {"SOURCE_DATE_EPOCH": str(epoch), "SYSTEMD_LOG_LEVEL": "info", **repart.env}
    run_tools("systemd-repart", argv, work, log=log, env=env, extra=extra)


def build_image(
    definition: ImageDefinition,
    target: Target,
    output: Path,
    *,
    root: Path | None = None,
    packages: Sequence[str | Path] = (),
    trust: Sequence[str | Path] = (),
    extra_packages: Sequence[str] = (),
    seed: str | None = None,
    source_date_epoch: int | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Build the disk OUTPUT (raw or qcow2, per the definition) for TARGET from ROOT or PACKAGES
    (the definition's packages and EXTRA_PACKAGES, with what they require from PACKAGES)."""
    say = progress or (lambda message: None)
    if (root is None) == (not packages):
        raise InputError("give either a root directory or packages", hint="--root DIR or --packages PKG...")
    epoch = (
        source_date_epoch if source_date_epoch is not None else int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    )
    if seed is not None:
        try:
            seed = str(uuid.UUID(seed))
        except ValueError:
            raise InputError(
                f"--seed {seed!r} is not a UUID", hint="e.g. --seed 0e4a...; omit it to derive one"
            ) from None
    # Everything checked before anything is written.
    repart = find_repart()
    image_tools(definition.filesystem)
    if target.qemu.firmware != "direct-kernel":  # firmware boot starts systemd-boot
        require_systemd_boot(target)
    if definition.format == "qcow2":
        require_tool("qemu-img", "qemu-utils", "write qcow2 images")
    keys = trusted_keys(trust) if packages else []
    selected = select_packages(definition, packages, [k for _, k in keys], extra_packages) if packages else []
    if root is not None and not root.is_dir():
        raise InputError("root directory not found", where=str(root))
    output = output.absolute()
    if output.is_dir():
        raise InputError("the output is a directory", where=str(output), hint="give the disk's file name")
    output.parent.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    log = output.parent / f"{output.name}.build.log"
    log.unlink(missing_ok=True)
    try:
        if selected:
            root = work / "root"
            say(f"installing {len(selected)} packages into the image root")
            with _clock(epoch):
                install_packages(root, [p.path for p in selected], trusted_keys=[k for _, k in keys])
            for path, _ in keys:
                add_key(root, path)
            identity = "packages:" + ",".join(f"{p.nevra}={p.content_root}" for p in selected)
        else:
            assert root is not None
            root = root.absolute()
            identity = "root:" + tree_digest(root)
        if definition.files:
            if not selected:
                # The caller's root stays as it is: the added files go on a copy.
                say("copying the root to add the definition's files")
                _copy_tree(root, work / "root")
                root = work / "root"
            for f in definition.files:
                write_file(root / f.path.lstrip("/"), f.content, f.mode, epoch)
            identity += (
                ",files:"
                + hashlib.sha256(
                    b"".join(f.path.encode() + b"\0" + f.content for f in definition.files)
                ).hexdigest()
            )
        kernel, version = _kernel(root)
        cmdline = kernel_cmdline(definition, target)
        seed = seed or derive_seed(definition, target, identity)

        say("writing the EFI system partition")
        make_esp_tree(work / "esp", definition, target, kernel, version, cmdline, epoch)
        volume_id = derive_uuid(seed, "esp").replace("-", "")[:8]
        make_esp_image(work / "esp", work / "esp.img", volume_id, epoch)

        say(f"writing the {definition.filesystem} root")
        clamp_mtimes(root, epoch)
        make_root_image(
            work,
            root,
            definition.filesystem,
            definition.size,
            derive_uuid(seed, "root-fs"),
            derive_uuid(seed, "root-hash-seed"),
            root_label(target),
            epoch,
            log=log,
        )
        render_definitions(
            work / "repart.d",
            RenderContext(
                target=target,
                filesystem=definition.filesystem,
                esp_image=f"{WORK}/esp.img",
                root_image=f"{WORK}/root.img",
                root_label=root_label(target),
            ),
        )
        say(f"writing the disk with systemd-repart {repart.version}")
        run_repart(repart, work, "disk.raw", seed, epoch, log=log)
        final = work / "disk.raw"
        if definition.format == "qcow2":
            say("converting to qcow2")
            final = _to_qcow2(final)
        _publish(final, output)
        log.unlink(missing_ok=True)
        return BuildResult(
            output, definition.format, seed, version, cmdline, tuple(p.nevra for p in selected)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _clock(epoch: int) -> Iterator[None]:
    """The runtime dates its states with SOURCE_DATE_EPOCH when it is set: set it while the image's
    root is installed, so that the database inside the image is reproducible too."""
    saved = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = saved


def _copy_tree(source: Path, dest: Path) -> None:
    done = subprocess.run(
        ["cp", "-a", "--reflink=auto", "--no-target-directory", str(source), str(dest)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ConaryError(f"copying the root failed: {done.stderr.strip()}", where=str(source))


def _to_qcow2(raw: Path) -> Path:
    qcow2 = raw.with_suffix(".qcow2")
    convert = subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
        capture_output=True,
        text=True,
    )
    if convert.returncode != 0:
        raise ConaryError(f"qemu-img convert failed: {convert.stderr.strip()}", where=str(raw))
    return qcow2


def _publish(disk: Path, output: Path) -> None:
    """fsync the finished disk, rename it over OUTPUT, fsync the directory."""
    with open(disk, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(disk, output)
    dirfd = os.open(output.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
