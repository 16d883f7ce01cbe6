"""Booting a disk in QEMU and waiting for a line on its serial console (docs/images.md).

Always TCG (``-accel tcg``): /dev/kvm exists on the machines this runs on, but guests fail on it.
How each target starts comes from toolchains/<arch>.toml (``qemu.firmware``):

- ``uefi``: the firmware's code read-only and a private copy of its variable store as pflash (OVMF on
  x86_64, AAVMF on aarch64); the firmware finds systemd-boot at the ESP's removable-media path, which
  reads the BLS entry and starts the kernel from the ESP.
- ``u-boot``: QEMU's bundled OpenSBI (``-bios default``) starts U-Boot in S-mode (the firmware's code
  given as ``-kernel``); U-Boot's UEFI finds systemd-boot at the ESP's removable-media path, and from
  there the boot is the ``uefi`` one (riscv64).
- ``direct-kernel``: OpenSBI starts the kernel that the disk's ESP holds, with the options of the
  disk's BLS entry: for a target whose firmware or systemd-boot this machine lacks.

The disk is attached with ``snapshot=on``: the guest's writes go to a temporary overlay, so a boot
check never changes the disk it checks. The serial console goes to the log. On the expected text the
VM is powered off (QEMU quits on SIGTERM) and the boot succeeds; a firmware or kernel failure line,
QEMU exiting, or the timeout fails it with the log's tail.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conary.errors import ConaryError, InputError
from conary.fsutil import require_tool
from conary.image.inspect import boot_entry, disk_format, esp_of, partitions, raw_view, read_esp_file
from conary.targets import Target

DEFAULT_TIMEOUT = 300.0
MEMORY_MB = 256
TAIL_LINES = 20
# Lines after which the boot cannot reach the marker any more: fail at once instead of at the timeout.
FAILURE_LINES = (
    "Kernel panic - not syncing",
    "No bootable option or device was found",
    "Boot Failed.",
    "BdsDxe: failed to load Boot",
    "Shell> ",  # the UEFI shell: the firmware found nothing it could boot
    "EFI LOAD FAILED",  # U-Boot: the removable-media boot file failed to start or returned
)
# Terminal control sequences the firmware draws its screens with; dropped from the tail shown.
_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]")
QEMU_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-riscv64": "qemu-system-misc",
}
FIRMWARE_PACKAGES = {"OVMF": "ovmf", "AAVMF": "qemu-efi-aarch64", "u-boot": "u-boot-qemu"}
FIRMWARES = ("uefi", "u-boot", "direct-kernel")


@dataclass(frozen=True)
class BootResult:
    disk: Path
    arch: str
    seconds: float
    line: str  # the console line that held the expected text
    log: Path


class BootFailed(ConaryError):
    """The marker did not appear. ``tail`` holds the last lines of the console log."""

    def __init__(self, what: str, *, log: Path, tail: str, where: str) -> None:
        super().__init__(what, where=where, hint=f"the whole console log: {log}")
        self.log = log
        self.tail = tail


def _firmware(path: str | None, arch: str) -> Path:
    if not path:
        raise InputError(f"the {arch} target names no firmware file", where=f"toolchains/{arch}.toml: qemu")
    found = Path(path)
    if not found.is_file():
        package = next(
            (pkg for key, pkg in FIRMWARE_PACKAGES.items() if key in path), "the firmware's package"
        )
        raise InputError(
            f"firmware {path} not found",
            where=f"toolchains/{arch}.toml: qemu",
            hint=f"install the Debian package {package}",
        )
    return found


def _disk_device(target: Target) -> str:
    # virtio over PCI where the UEFI firmware (OVMF, AAVMF) enumerates PCI. riscv64's virt machine has
    # virtio-mmio transports, which U-Boot and the small kernel (no PCI) both drive.
    return "virtio-blk-pci" if target.qemu.firmware == "uefi" else "virtio-blk-device"


def qemu_command(target: Target, disk: Path, fmt: str, work: Path) -> list[str]:
    """The QEMU command line booting DISK for TARGET; firmware variables and kernels go to WORK."""
    q = target.qemu
    system = require_tool(q.system, QEMU_PACKAGES.get(q.system, "qemu-system"), f"boot {target.arch} images")
    argv = [
        system,
        "-accel",
        "tcg",
        "-machine",
        q.machine,
        "-cpu",
        q.cpu,
        "-m",
        str(MEMORY_MB),
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-drive",
        f"if=none,id=disk,format={fmt},file={disk},snapshot=on",
        "-device",
        f"{_disk_device(target)},drive=disk",
    ]
    if q.firmware == "uefi":
        code = _firmware(q.firmware_code, target.arch)
        variables = _firmware(q.firmware_vars, target.arch)
        private_vars = work / "vars.fd"
        shutil.copyfile(variables, private_vars)
        argv += [
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={private_vars}",
        ]
    elif q.firmware == "u-boot":
        argv += ["-bios", "default", "-kernel", str(_firmware(q.firmware_code, target.arch))]
    elif q.firmware == "direct-kernel":
        kernel, options = _kernel_from_disk(disk, work)
        argv += ["-bios", "default", "-kernel", str(kernel), "-append", options]
    else:
        raise InputError(
            f"unknown firmware {q.firmware!r}",
            where=f"toolchains/{target.arch}.toml: qemu.firmware",
            hint=f"use one of {', '.join(FIRMWARES)}",
        )
    return argv


def _kernel_from_disk(disk: Path, work: Path) -> tuple[Path, str]:
    """The kernel and options of the disk's BLS entry, read from its ESP."""
    with raw_view(disk) as raw:
        parts = partitions(raw, where=str(disk))[1]
        esp = esp_of(parts, where=str(disk))
        _, entry = boot_entry(raw, esp)
        if "linux" not in entry:
            raise InputError("the boot entry names no kernel ('linux' key)", where=str(disk))
        kernel = work / "kernel"
        kernel.write_bytes(read_esp_file(raw, esp, entry["linux"]))
    return kernel, entry.get("options", "")


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    clean = _ANSI.sub("", text).replace("\r", "")
    return "\n".join([line for line in clean.splitlines() if line.strip()][-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Power the VM off: QEMU shuts down on SIGTERM; kill it if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def boot_image(
    disk: Path,
    target: Target,
    *,
    expect: str,
    timeout: float = DEFAULT_TIMEOUT,
    log: Path | None = None,
) -> BootResult:
    """Boot DISK for TARGET under TCG until EXPECT appears on the console; raises BootFailed otherwise."""
    if not expect:
        raise InputError("the expected text is empty", hint="e.g. --expect 'conary: booted x86_64'")
    if not disk.is_file():
        raise InputError("disk not found", where=str(disk))
    fmt = disk_format(disk)
    if log is None:
        fd, name = tempfile.mkstemp(prefix="conary-boot-", suffix=".log")
        os.close(fd)
        log = Path(name)
    with tempfile.TemporaryDirectory(prefix="conary-boot-") as tmp:
        argv = qemu_command(target, disk.absolute(), fmt, Path(tmp))
        start = time.monotonic()
        console = ""
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert proc.stdout is not None
            reason = ""
            try:
                while True:
                    left = timeout - (time.monotonic() - start)
                    if left <= 0:
                        reason = f"not seen within {timeout:g} s"
                        break
                    ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
                    if not ready:
                        continue
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        proc.wait()
                        reason = f"QEMU exited with code {proc.returncode} before it appeared"
                        break
                    out.write(chunk)
                    out.flush()
                    console += chunk.decode("utf-8", errors="replace")
                    if expect in console:
                        seconds = time.monotonic() - start
                        line = next(ln for ln in console.replace("\r", "").splitlines() if expect in ln)
                        return BootResult(disk, target.arch, seconds, line.strip(), log)
                    failed = next((f for f in FAILURE_LINES if f in console), None)
                    if failed:
                        reason = f"the boot failed ({failed!r} on the console)"
                        break
            finally:
                _stop(proc)
                proc.stdout.close()
    raise BootFailed(
        f"{expect!r} did not appear on the {target.arch} console: {reason}",
        log=log,
        tail=_tail(console),
        where=str(disk),
    )
