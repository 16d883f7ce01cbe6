"""Building disks with the real systemd-repart (offline, in a user namespace) and reading them back.

The packages here are small but real, signed CCS packages installed by the runtime: a stand-in
"linux" whose /boot/vmlinuz-0 is not a kernel (these tests never boot; test_image_boot does), a
busybox tree, and the real minimal-init recipe cooked for x86_64.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conary.ccs import PackageMeta, build_package, generate_keypair, load_signing_key
from conary.cook import CookOptions, cook_recipe
from conary.image import build_image, inspect_image, load_definition
from conary.targets import load_target

REPO = Path(__file__).resolve().parent.parent
MINIMAL = REPO / "images" / "minimal.image.toml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a directory of busybox, minimal-init and linux packages, the public key that signed them)."""
    base = tmp_path_factory.mktemp("image-packages")
    key, pub = generate_keypair(base / "key")
    dist = base / "dist"
    signing = load_signing_key(key)
    kernel_tree = base / "linux"
    (kernel_tree / "boot").mkdir(parents=True)
    (kernel_tree / "boot" / "vmlinuz-0").write_bytes(b"stand-in kernel\n" * 1000)
    build_package(kernel_tree, PackageMeta("linux", "0", "1", "x86_64"), output_dir=dist, signing_key=signing)
    busybox_tree = base / "busybox"
    (busybox_tree / "bin").mkdir(parents=True)
    (busybox_tree / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (busybox_tree / "bin" / "busybox").chmod(0o755)
    (busybox_tree / "bin" / "sh").symlink_to("busybox")
    build_package(
        busybox_tree, PackageMeta("busybox", "1", "1", "x86_64"), output_dir=dist, signing_key=signing
    )
    cook_recipe(
        REPO / "recipes" / "minimal-init.recipe.toml",
        CookOptions(
            output_dir=dist, key=key, workdir=base / "cook", offline=True, source_cache=base / "cache"
        ),
    )
    return dist, pub


def _build(out: Path, packages: tuple[Path, Path], **kwargs) -> Path:
    dist, pub = packages
    definition = load_definition(kwargs.pop("definition", MINIMAL))
    if "format" in kwargs:
        definition = definition.with_format(kwargs.pop("format"))
    return build_image(definition, load_target("x86_64"), out, packages=[dist], trust=[pub], **kwargs).path


def test_two_builds_are_byte_identical(tmp_path: Path, packages: tuple[Path, Path]) -> None:
    first = _build(tmp_path / "a" / "disk.raw", packages)
    second = _build(tmp_path / "b" / "disk.raw", packages)
    assert subprocess.run(["cmp", str(first), str(second)]).returncode == 0
    # The work directories are gone; only the disks remain.
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["disk.raw"]


def test_another_seed_gives_another_disk(tmp_path: Path, packages: tuple[Path, Path]) -> None:
    first = _build(tmp_path / "a.raw", packages)
    second = _build(tmp_path / "b.raw", packages, seed="0e4a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b")
    assert subprocess.run(["cmp", "-s", str(first), str(second)]).returncode == 1
    info = inspect_image(second)
    assert info.disk_uuid != inspect_image(first).disk_uuid


def test_inspect_shows_partitions_boot_entry_and_the_images_packages(
    tmp_path: Path, packages: tuple[Path, Path], cli
) -> None:
    disk = _build(tmp_path / "disk.raw", packages)
    result = cli("image", "inspect", disk, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    labels = [(p["label"], p["type"]) for p in info["partitions"]]
    assert labels == [
        ("esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        ("root-x86_64", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),  # root-x86-64, discoverable
    ]
    assert info["partitions"][1]["size"] == 256 * 1024**2  # the definition's size = "256M"
    entry = info["boot_entry"]
    assert entry["linux"] == "/minimal/vmlinuz-0"
    assert "root=PARTLABEL=root-x86_64" in entry["options"] and "console=ttyS0" in entry["options"]
    assert sorted(p["name"] for p in info["packages"]) == ["busybox", "linux", "minimal-init"]
    text = cli("image", "inspect", disk)
    assert "minimal-init-1-1.x86_64" in text.out and "root-x86_64" in text.out


def test_files_are_root_owned_and_the_definitions_files_are_added(
    tmp_path: Path, packages: tuple[Path, Path]
) -> None:
    definition = tmp_path / "d.image.toml"
    definition.write_text(
        MINIMAL.read_text()
        + '\n[[files]]\npath = "/etc/motd"\ncontent = "built by conary\\n"\nmode = "0600"\n'
    )
    disk = _build(tmp_path / "disk.raw", packages, definition=definition)
    root = next(p for p in inspect_image(disk).partitions if p.label == "root-x86_64")
    stat = subprocess.run(
        ["debugfs", "-R", "stat /etc/motd", f"{disk}?offset={root.start}"], capture_output=True, text=True
    ).stdout
    assert "Mode:  0600" in stat and "User:     0   Group:     0" in stat
    cat = subprocess.run(
        ["debugfs", "-R", "cat /etc/motd", f"{disk}?offset={root.start}"], capture_output=True, text=True
    ).stdout
    assert cat == "built by conary\n"
    init = subprocess.run(
        ["debugfs", "-R", "cat /etc/init.d/rcS", f"{disk}?offset={root.start}"],
        capture_output=True,
        text=True,
    ).stdout
    assert 'echo "conary: booted x86_64"' in init


def test_qcow2(tmp_path: Path, packages: tuple[Path, Path]) -> None:
    disk = _build(tmp_path / "disk.qcow2", packages, format="qcow2")
    assert disk.read_bytes()[:4] == b"QFI\xfb"
    info = inspect_image(disk)
    assert info.format == "qcow2"
    assert [p.label for p in info.partitions] == ["esp", "root-x86_64"]


def test_erofs_root(tmp_path: Path, packages: tuple[Path, Path]) -> None:
    definition = tmp_path / "d.image.toml"
    definition.write_text(MINIMAL.read_text().replace('filesystem = "ext4"', 'filesystem = "erofs"'))
    first = _build(tmp_path / "a.raw", packages, definition=definition)
    second = _build(tmp_path / "b.raw", packages, definition=definition)
    assert subprocess.run(["cmp", str(first), str(second)]).returncode == 0
    info = inspect_image(first)
    assert "ro" in info.boot_entry["options"].split()
    assert sorted(p.name for p in info.packages) == ["busybox", "linux", "minimal-init"]
