"""`conary image`: build a bootable disk, boot it in QEMU until a marker appears, inspect it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conary.cli import output
from conary.errors import InputError
from conary.recipe import machine_name

BUILD_EPILOG = """\
examples:
  conary image build images/minimal.image.toml --packages dist/ -o minimal.raw
  conary image build my.image.toml --root /srv/roots/base --format qcow2 -o base.qcow2

The disk is written beside OUTPUT and renamed over it when complete. The last line of output is
the disk's path. docs/images.md describes the definition format."""

BOOT_EPILOG = """\
examples:
  conary image boot minimal.raw --expect 'conary: booted x86_64'
  conary image boot arm.raw --arch aarch64 --expect 'conary: booted aarch64' --log boot.log

Exit 0 once TEXT appears (the VM is then powered off); otherwise exit 1 with the console log's
last lines. x86_64 and aarch64 boot through UEFI (OVMF, AAVMF) and systemd-boot; riscv64 through
QEMU's OpenSBI, U-Boot's UEFI and systemd-boot. Always TCG."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "image",
        help="build, boot and inspect bootable disk images",
        description="Bootable disk images: systemd-repart disks from runtime-made roots, QEMU boot checks.",
    )
    sub = p.add_subparsers(dest="image_command", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(func=lambda args: _usage(p))

    b = sub.add_parser(
        "build",
        help="build a disk from an image definition",
        description="Build a GPT disk (ESP with systemd-boot, a BLS entry and the kernel; an ext4 or "
        "erofs root) from DEFINITION, with a root the runtime makes from packages or a given root.",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("definition", metavar="DEFINITION", help="the image definition (.image.toml)")
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--root", type=Path, metavar="DIR", help="an installed root to put on the disk as it is"
    )
    source.add_argument(
        "--packages",
        nargs="+",
        metavar="PKG",
        help=".ccs files or directories of them; the definition's packages are installed from these",
    )
    b.add_argument("-o", "--output", type=Path, required=True, metavar="DISK", help="the disk file to write")
    b.add_argument("--arch", default=None, help="the target (default: this machine's)")
    b.add_argument("--format", choices=("raw", "qcow2"), help="override the definition's format")
    b.add_argument("--size", help="override the definition's root size (e.g. 128M)")
    b.add_argument("--seed", help="repart's seed UUID (default: derived from the inputs)")
    b.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="KEY.pub",
        help="a key the packages must be signed by (default: your default key)",
    )
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=_build)

    t = sub.add_parser(
        "boot",
        help="boot a disk in QEMU and wait for a line on its console",
        description="Boot DISK under QEMU (TCG) with its serial console in a log, until TEXT appears.",
        epilog=BOOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("disk", type=Path, metavar="DISK", help="the disk, raw or qcow2")
    t.add_argument("--arch", default=None, help="the disk's architecture (default: this machine's)")
    t.add_argument("--expect", required=True, metavar="TEXT", help="the console text that means success")
    t.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to wait (default 300)")
    t.add_argument("--log", type=Path, metavar="FILE", help="where the console goes (default: a temp file)")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(func=_boot)

    i = sub.add_parser(
        "inspect",
        help="show a disk's partitions, boot entry and packages",
        description="Partitions and sizes, the Boot Loader Specification entry, and the packages the "
        "image's own Conary database lists. Reads the disk without mounting it.",
    )
    i.add_argument("disk", type=Path, metavar="DISK", help="the disk, raw or qcow2")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_inspect)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _target(arch: str | None):  # -> Target
    from conary.targets import load_target  # keeps `conary --help` fast

    return load_target(arch or machine_name())


def _build(args: argparse.Namespace) -> int:
    from conary.image import build_image, load_definition  # keeps `conary --help` fast

    definition = load_definition(args.definition)
    if args.format:
        definition = definition.with_format(args.format)
    if args.size:
        definition = definition.with_size(args.size)
    if args.root is not None and not args.root.is_dir():
        raise InputError("root directory not found", where=str(args.root))
    result = build_image(
        definition,
        _target(args.arch),
        args.output,
        root=args.root,
        packages=args.packages or (),
        trust=args.trust,
        seed=args.seed,
        progress=None if args.json else output.notice,
    )
    if args.json:
        output.emit_json(
            {
                "path": str(result.path),
                "format": result.format,
                "seed": result.seed,
                "kernel": result.kernel,
                "cmdline": result.cmdline,
                "packages": list(result.packages),
            }
        )
        return 0
    print(result.path)
    return 0


def _boot(args: argparse.Namespace) -> int:
    from conary.image import boot_image  # keeps `conary --help` fast
    from conary.image.boot import BootFailed

    target = _target(args.arch)
    if not args.json:
        output.notice(f"booting {args.disk} ({target.arch}, TCG), waiting for {args.expect!r}")
    try:
        result = boot_image(args.disk, target, expect=args.expect, timeout=args.timeout, log=args.log)
    except BootFailed as err:
        lines = err.tail.splitlines()
        print(f"--- last {len(lines)} lines of {err.log} ---", file=sys.stderr)
        for line in lines:
            print(line, file=sys.stderr)
        print("---", file=sys.stderr)
        raise
    if args.json:
        output.emit_json(
            {
                "disk": str(result.disk),
                "arch": result.arch,
                "seconds": round(result.seconds, 2),
                "line": result.line,
                "log": str(result.log),
            }
        )
        return 0
    print(result.line)
    output.notice(f"booted in {result.seconds:.1f} s (console log: {result.log})")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from conary.image import inspect_image  # keeps `conary --help` fast

    info = inspect_image(args.disk)
    if args.json:
        output.emit_json(info.to_json())
        return 0
    print(f"{info.path}: {info.format}, {_size(info.size)}, GPT {info.disk_uuid}")
    for p in info.partitions:
        print(f"  {p.number}  {p.label:<16} {_size(p.size):>9}  type {p.type}  uuid {p.uuid}")
    print(f"boot entry {info.boot_entry_name}:")
    for key, value in info.boot_entry.items():
        print(f"  {key} {value}")
    print(
        f"packages ({len(info.packages)}):"
        if info.packages
        else "packages: none (no Conary database in the root)"
    )
    for pkg in info.packages:
        print(f"  {pkg.name}-{pkg.version}-{pkg.release}.{pkg.arch}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
