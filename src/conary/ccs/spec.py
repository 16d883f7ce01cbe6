"""ccs.toml: what `conary ccs build DIR` packs — [package], [components], [scriptlets], [provenance]."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conary.ccs.components import ComponentRules
from conary.ccs.errors import CcsInputError
from conary.ccs.model import SCRIPTLET_NAMES, PackageMeta

SPEC_NAME = "ccs.toml"
PACKAGE_KEYS = ("name", "version", "release", "arch", "summary", "description", "license", "homepage")
TABLES = ("package", "components", "scriptlets", "provenance")


@dataclass(frozen=True)
class BuildSpec:
    meta: PackageMeta
    components: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scriptlets: Mapping[str, str] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)


def host_arch() -> str:
    return os.uname().machine


def _unknown(key: str, choices: tuple[str, ...] | list[str], where: str, path: Path) -> CcsInputError:
    close = difflib.get_close_matches(key, choices, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(choices)}"
    return CcsInputError(f"unknown key '{key}'", where=f"{path}: {where}", hint=hint)


def load_build_spec(directory: str | os.PathLike[str]) -> BuildSpec:
    path = Path(directory) / SPEC_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CcsInputError(f"no {SPEC_NAME} here", where=str(directory), hint=f"create {path}")
    except tomllib.TOMLDecodeError as err:
        raise CcsInputError(f"invalid TOML: {err}", where=str(path))
    for key in data:
        if key not in TABLES:
            raise _unknown(key, TABLES, key, path)
        if not isinstance(data[key], dict):
            raise CcsInputError(f"'{key}' must be a table", where=f"{path}: {key}")
    package = data.get("package")
    if package is None:
        raise CcsInputError("missing [package] table", where=str(path))
    for key, value in package.items():
        if key not in PACKAGE_KEYS:
            raise _unknown(key, PACKAGE_KEYS, f"package.{key}", path)
        if not isinstance(value, str):
            raise CcsInputError(
                f"must be a string, got {type(value).__name__}", where=f"{path}: package.{key}"
            )
    for key in ("name", "version"):
        if not package.get(key):
            raise CcsInputError("required key is missing", where=f"{path}: package.{key}")
    meta = PackageMeta(
        name=package["name"],
        version=package["version"],
        release=package.get("release", "1"),
        arch=package.get("arch", host_arch()),
        summary=package.get("summary", ""),
        description=package.get("description", ""),
        license=package.get("license", ""),
        homepage=package.get("homepage", ""),
    )
    components: dict[str, tuple[str, ...]] = {}
    for name, globs in data.get("components", {}).items():
        if isinstance(globs, str):
            globs = [globs]
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise CcsInputError("must be a list of glob strings", where=f"{path}: components.{name}")
        components[name] = tuple(globs)
    try:
        ComponentRules.from_mapping(components)
    except CcsInputError:
        raise
    except Exception as err:
        raise CcsInputError(str(err), where=f"{path}: components")
    scriptlets: dict[str, str] = {}
    for name, text in data.get("scriptlets", {}).items():
        if name not in SCRIPTLET_NAMES:
            raise _unknown(name, SCRIPTLET_NAMES, f"scriptlets.{name}", path)
        if not isinstance(text, str):
            raise CcsInputError("must be a string (shell text)", where=f"{path}: scriptlets.{name}")
        scriptlets[name] = text
    provenance = data.get("provenance", {})
    for key, value in provenance.items():
        if not isinstance(value, str | int | bool | list):
            raise CcsInputError(
                "must be a string, integer, boolean or list", where=f"{path}: provenance.{key}"
            )
    return BuildSpec(meta, components, scriptlets, dict(provenance))
