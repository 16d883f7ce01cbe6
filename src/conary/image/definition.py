"""Image definitions: the small TOML file that says what goes on a disk (docs/images.md).

```toml
name = "minimal"
packages = ["busybox", "minimal-init", "linux"]   # what the runtime installs into the root
format = "raw"                                    # or "qcow2"
filesystem = "ext4"                               # or "erofs" (read-only root)
size = "64M"                                      # the root partition (ext4); erofs is sized to fit
cmdline = "loglevel=4"                            # appended to the kernel command line

[[files]]                                         # files added to the root, after the packages
path = "/etc/motd"
content = "welcome\\n"                            # or: source = "motd" (beside the definition)
mode = "0644"
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from conary.errors import InputError

FORMATS = ("raw", "qcow2")
FILESYSTEMS = ("ext4", "erofs")
_KEYS = {"name", "packages", "format", "filesystem", "size", "cmdline", "files"}
_FILE_KEYS = {"path", "content", "source", "mode"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SIZE = re.compile(r"(\d+)\s*([KMG]?)", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


@dataclass(frozen=True)
class ImageFile:
    """A file the definition adds to the root: its path in the image, bytes and mode."""

    path: str  # absolute, normalised
    content: bytes
    mode: int


@dataclass(frozen=True)
class ImageDefinition:
    name: str
    packages: tuple[str, ...]
    format: str
    filesystem: str
    size: int  # bytes of the root partition (ext4)
    cmdline: str
    files: tuple[ImageFile, ...]
    path: Path | None = None
    text: str = ""  # the definition's text, part of the image's seed

    def with_format(self, fmt: str) -> ImageDefinition:
        _choice(fmt, FORMATS, "format", self.path)
        return _replace(self, format=fmt)

    def with_size(self, size: str | int) -> ImageDefinition:
        return _replace(self, size=parse_size(size, where=str(self.path or "<definition>")))


def _replace(definition: ImageDefinition, **changes: Any) -> ImageDefinition:
    fields = {**definition.__dict__, **changes}
    return ImageDefinition(**fields)


def parse_size(value: str | int, *, where: str) -> int:
    """``64M``, ``1G``, ``524288K`` or a byte count; at least 1 MiB."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.fullmatch(str(value).strip())
        if not match:
            raise InputError(f"invalid size {value!r}", where=where, hint='write e.g. "64M" or "1G"')
        size = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if size < 1024**2:
        raise InputError(f"size {value!r} is below 1M", where=where, hint="give the root at least 1M")
    return size


def _choice(value: Any, allowed: tuple[str, ...], key: str, path: Path | None) -> str:
    if value not in allowed:
        raise InputError(
            f"{key} must be one of {', '.join(allowed)}, not {value!r}",
            where=f"{path or '<definition>'}: {key}",
        )
    return str(value)


def _string(data: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string", where=f"{where}: {key}")
    return value


def _file(entry: Any, index: int, base: Path | None, where: str) -> ImageFile:
    at = f"{where}: files[{index}]"
    if not isinstance(entry, dict):
        raise InputError("each [[files]] entry must be a table", where=at)
    unknown = sorted(set(entry) - _FILE_KEYS)
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r}", where=at, hint=f"known: {', '.join(sorted(_FILE_KEYS))}"
        )
    path = _string(entry, "path", at, "")
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts or pure == PurePosixPath("/"):
        raise InputError(f"path {path!r} must be absolute, without '..'", where=f"{at}.path")
    if ("content" in entry) == ("source" in entry):
        raise InputError("give exactly one of content and source", where=at)
    if "content" in entry:
        content = _string(entry, "content", at).encode()
    else:
        source = Path(_string(entry, "source", at))
        source = source if source.is_absolute() else (base or Path.cwd()) / source
        try:
            content = source.read_bytes()
        except OSError as err:
            raise InputError(f"cannot read {source}: {err.strerror}", where=f"{at}.source") from None
    mode_text = _string(entry, "mode", at, "0644")
    try:
        mode = int(mode_text, 8)
    except ValueError:
        raise InputError(f"mode {mode_text!r} is not octal", where=f"{at}.mode") from None
    if mode & ~0o7777:
        raise InputError(f"mode {mode_text!r} is out of range", where=f"{at}.mode")
    return ImageFile(str(pure), content, mode)


def loads_definition(text: str, path: Path | None = None) -> ImageDefinition:
    where = str(path or "<definition>")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"not valid TOML: {err}", where=where) from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r}", where=where, hint=f"known: {', '.join(sorted(_KEYS))}"
        )
    name = _string(data, "name", where, "")
    if not _NAME.fullmatch(name):
        raise InputError(f"name {name!r} must be letters, digits, '.', '_' or '-'", where=f"{where}: name")
    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and p for p in packages):
        raise InputError("packages must be a list of package names", where=f"{where}: packages")
    files = data.get("files", [])
    if not isinstance(files, list):
        raise InputError("files must be an array of tables ([[files]])", where=f"{where}: files")
    base = path.parent if path else None
    added = tuple(_file(entry, i, base, where) for i, entry in enumerate(files))
    seen: set[str] = set()
    for f in added:
        if f.path in seen:
            raise InputError(f"{f.path} is added twice", where=f"{where}: files")
        seen.add(f.path)
    return ImageDefinition(
        name=name,
        packages=tuple(packages),
        format=_choice(data.get("format", "raw"), FORMATS, "format", path),
        filesystem=_choice(data.get("filesystem", "ext4"), FILESYSTEMS, "filesystem", path),
        size=parse_size(data.get("size", "256M"), where=f"{where}: size"),
        cmdline=_string(data, "cmdline", where, ""),
        files=added,
        path=path,
        text=text,
    )


def load_definition(path: str | Path) -> ImageDefinition:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("image definition not found", where=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read image definition: {err}", where=str(path)) from None
    return loads_definition(text, path)
