"""The choices `conary bootstrap init` makes, persisted in the work dir as bootstrap.toml.

Every later command reads them from there, so `bootstrap run` after `init` needs no options. The
file is written atomically (temp + fsync + rename), so a kill leaves the old choices or the new ones.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from conary.errors import InputError
from conary.fsutil import atomic_write_bytes

CONFIG_NAME = "bootstrap.toml"
CONFIG_FORMAT = 1
DEFAULT_WORK = Path("conary-bootstrap")


@dataclass(frozen=True)
class BootstrapConfig:
    work: Path
    target: str
    profile: str = "minimal"
    jobs: int = 1  # packages built at once
    mirrors: tuple[str, ...] = ()
    source_cache: Path | None = None  # None: conary.fetch's default cache
    skip_stage2: bool = False
    skip_conary: bool = False
    # Build from a source's other bytes when its pinned ones are nowhere (a re-rolled tarball):
    # warned about at every run, named in each such key and recorded in the packages' provenance.
    skip_verify: bool = False
    # "lock": the seed is the Debian packages pinned in stages/seed/<arch>.lock; "host": the host's
    # /usr, read-only (quick, for trying a profile on a normal machine; not reproducible).
    seed: str = "lock"

    def to_toml(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": CONFIG_FORMAT,
            "target": self.target,
            "profile": self.profile,
            "jobs": self.jobs,
            "mirrors": list(self.mirrors),
            "skip_stage2": self.skip_stage2,
            "skip_conary": self.skip_conary,
            "skip_verify": self.skip_verify,
            "seed": self.seed,
        }
        if self.source_cache is not None:
            data["source_cache"] = str(self.source_cache)
        return data


def config_path(work: Path) -> Path:
    return Path(work) / CONFIG_NAME


def save_config(config: BootstrapConfig) -> Path:
    work = Path(config.work)
    work.mkdir(parents=True, exist_ok=True)
    path = config_path(work)
    atomic_write_bytes(path, tomli_w.dumps(config.to_toml()).encode())
    return path


def load_config(work: Path) -> BootstrapConfig:
    path = config_path(work)
    if not path.is_file():
        raise InputError(
            "not a bootstrap work dir (no bootstrap.toml)",
            where=str(work),
            hint="run 'conary bootstrap init --target ARCH --profile NAME --work DIR' first",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"not valid TOML: {err}", where=str(path), hint="run 'conary bootstrap init' again"
        ) from None
    version = data.pop("format", None)
    if version != CONFIG_FORMAT:
        raise InputError(
            f"work dir format {version!r} is not the {CONFIG_FORMAT} this Conary reads",
            where=str(path),
            hint="use the Conary that made it, or start a new work dir",
        )
    known = {f.name for f in dataclasses.fields(BootstrapConfig)} - {"work"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"unknown key '{unknown[0]}'", where=str(path), hint="run 'conary bootstrap init' again"
        )
    try:
        return BootstrapConfig(
            work=Path(work),
            target=str(data["target"]),
            profile=str(data.get("profile", "minimal")),
            jobs=int(data.get("jobs", 1)),
            mirrors=tuple(str(m) for m in data.get("mirrors", ())),
            source_cache=Path(data["source_cache"]) if data.get("source_cache") else None,
            skip_stage2=bool(data.get("skip_stage2", False)),
            skip_conary=bool(data.get("skip_conary", False)),
            skip_verify=bool(data.get("skip_verify", False)),
            seed=str(data.get("seed", "lock")),
        )
    except KeyError as err:
        raise InputError(f"missing key {err.args[0]!r}", where=str(path)) from None
