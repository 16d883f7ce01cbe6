"""Targets: toolchains/<arch>.toml read into frozen data (docs/profiles.md describes the format).

The bootstrap takes the build settings and the seed's cross packages from here, and image building
and boot checks take QEMU, firmware and partition types. Reading a target needs nothing but the
distro tree, so every layer above recipe may use it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from conary.distro_tree import tree_dir
from conary.errors import InputError
from conary.recipe import TargetMacros, machine_name


@dataclass(frozen=True)
class QemuSettings:
    system: str
    user: str
    machine: str
    cpu: str
    console: str
    firmware: str  # "uefi", "u-boot" or "direct-kernel" (conary.image.boot)
    firmware_code: str | None = None
    firmware_vars: str | None = None


@dataclass(frozen=True)
class ImageSettings:
    root_partition_type: str
    efi_boot_file: str
    systemd_boot: str


@dataclass(frozen=True)
class Target:
    arch: str
    debian_arch: str
    gnu_triple: str
    musl_triple: str
    kernel_arch: str
    kernel_image: str
    cflags: str
    cross_packages: tuple[str, ...]
    qemu: QemuSettings
    image: ImageSettings
    path: Path

    @property
    def is_native(self) -> bool:
        return self.arch == machine_name()

    def macros(self) -> TargetMacros:
        """The recipe macros of a build for this target on this machine."""
        return TargetMacros(
            arch=self.arch,
            kernel_arch=self.kernel_arch,
            gnu_triple=self.gnu_triple,
            musl_triple=self.musl_triple,
            cross_compile="" if self.is_native else f"{self.gnu_triple}-",
            cflags=self.cflags,
        )


def targets_dir() -> Path:
    return tree_dir("toolchains")


def known_targets(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or targets_dir()).glob("*.toml"))


def load_target(arch: str, directory: Path | None = None) -> Target:
    """The target *arch*; an unknown name is an error that lists the known ones."""
    directory = directory or targets_dir()
    path = directory / f"{arch}.toml"
    if not path.is_file():
        known = ", ".join(known_targets(directory)) or "none"
        raise InputError(f"unknown target '{arch}'", where=str(directory), hint=f"known targets: {known}")
    try:
        data = tomllib.loads(path.read_text())
        target, cross, qemu, image = data["target"], data.get("cross", {}), data["qemu"], data["image"]
        return Target(
            arch=target["arch"],
            debian_arch=target["debian_arch"],
            gnu_triple=target["gnu_triple"],
            musl_triple=target["musl_triple"],
            kernel_arch=target["kernel_arch"],
            kernel_image=target["kernel_image"],
            cflags=target.get("cflags", "-O2 -pipe"),
            cross_packages=tuple(cross.get("packages", ())),
            qemu=QemuSettings(**qemu),
            image=ImageSettings(**image),
            path=path,
        )
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML: {err}", where=str(path)) from None
    except KeyError as err:
        raise InputError(f"missing key {err.args[0]!r}", where=str(path)) from None
    except TypeError as err:
        raise InputError(f"unexpected key: {err}", where=str(path)) from None
