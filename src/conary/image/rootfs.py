"""The root filesystem image (ext4 or erofs), made in a user namespace and handed to repart whole.

ext4: ``mkfs.ext4 -d`` copies the tree with its owners as the user namespace sees them (root), but it
also copies each file's atime and ctime and stamps creation times with the clock. For a reproducible
image the UUID and directory hash seed come from the image's seed, E2FSPROGS_FAKE_TIME fixes the
superblock's times, and debugfs then sets every inode's atime, ctime and crtime to
SOURCE_DATE_EPOCH (mtimes are clamped in the tree beforehand).

erofs: ``mkfs.erofs`` clamps every time to SOURCE_DATE_EPOCH itself; the UUID comes from the seed.
"""

from __future__ import annotations

import os
from pathlib import Path

from conary.image.userns import WORK, run_tools

DEBUGFS_CMDS = "debugfs.cmds"


def clamp_mtimes(tree: Path, epoch: int) -> None:
    """Set every entry's mtime newer than EPOCH to it (without following symlinks), deepest first."""
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    if os.lstat(tree).st_mtime > epoch:
        os.utime(tree, (epoch, epoch))


def debugfs_commands(tree: Path, epoch: int) -> str:
    """set_inode_field commands giving every inode of TREE (and the root directory) fixed times."""
    lines = []
    paths = ["/"]
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel = os.path.relpath(dirpath, tree)
        paths += [os.path.normpath(os.path.join("/", rel, n)) for n in sorted([*dirnames, *filenames])]
    for path in paths:
        if '"' in path or "\n" in path:
            continue  # debugfs cannot quote these; such a file keeps its copied times
        for field in ("atime", "ctime", "crtime"):
            lines.append(f'sif "{path}" {field} @{epoch}')
    return "\n".join(lines) + "\n"


def make_root_image(
    work: Path,
    root: Path,
    filesystem: str,
    size: int,
    fs_uuid: str,
    hash_seed: str,
    label: str,
    epoch: int,
    *,
    log: Path,
) -> Path:
    """WORK/root.img from ROOT; ROOT outside WORK is bound read-only at /image/root."""
    inside_root = root if root == work / "root" else None
    env = {"SOURCE_DATE_EPOCH": str(epoch), "E2FSPROGS_FAKE_TIME": str(max(epoch, 1))}
    image = work / "root.img"
    if filesystem == "ext4":
        (work / DEBUGFS_CMDS).write_text(debugfs_commands(root, epoch))
        script = (
            f"mkfs.ext4 -q -F -L {label} -U {fs_uuid} -E hash_seed={hash_seed},root_owner=0:0 "
            f"-d {WORK}/root {WORK}/root.img {size // 1024}k\n"
            f"debugfs -w -f {WORK}/{DEBUGFS_CMDS} {WORK}/root.img >/dev/null\n"
        )
    else:
        script = f"mkfs.erofs -U {fs_uuid} {WORK}/root.img {WORK}/root\n"
    run_tools(
        f"mkfs.{filesystem}",
        ["/bin/sh", "-e", "-c", script],
        work,
        log=log,
        env=env,
        root=None if inside_root else root,
    )
    return image
