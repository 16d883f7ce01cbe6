"""Bootable disk images: definitions, repart.d templates, systemd-repart offline, QEMU boot checks.

    definition = load_definition("images/minimal.image.toml")
    result = build_image(definition, load_target("x86_64"), Path("minimal.raw"), packages=["dist/"])
    boot_image(result.path, load_target("x86_64"), expect="conary: booted x86_64", log=Path("boot.log"))
    info = inspect_image(result.path)

docs/images.md describes the definition format, the disk layout and how each target boots.
"""

from conary.image.boot import BootResult, boot_image
from conary.image.build import BuildResult, build_image, kernel_cmdline
from conary.image.definition import ImageDefinition, ImageFile, load_definition, loads_definition
from conary.image.inspect import ImageInfo, Partition, inspect_image

__all__ = [
    "BootResult",
    "BuildResult",
    "ImageDefinition",
    "ImageFile",
    "ImageInfo",
    "Partition",
    "boot_image",
    "build_image",
    "inspect_image",
    "kernel_cmdline",
    "load_definition",
    "loads_definition",
]
