"""Read-only questions about what a root has installed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from conary.ccs import Dependency
from conary.errors import InputError
from conary.runtime.model import Selected
from conary.runtime.session import open_root


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    release: str
    arch: str
    components: tuple[str, ...]
    summary: str

    @classmethod
    def of(cls, sel: Selected) -> InstalledPackage:
        m = sel.manifest
        return cls(m.name, m.version, m.release, m.arch, sel.components, m.summary)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "release": self.release,
            "arch": self.arch,
            "components": list(self.components),
            "summary": self.summary,
        }


def list_installed(root: str | os.PathLike[str]) -> list[InstalledPackage]:
    with open_root(root) as session:
        return [InstalledPackage.of(s) for s in session.db.installed().values()]


def _get(installed: dict[str, Selected], name: str) -> Selected:
    if name not in installed:
        raise InputError(f"package {name} is not installed", hint="see 'conary list'")
    return installed[name]


def depends(root: str | os.PathLike[str], name: str) -> list[Dependency]:
    with open_root(root) as session:
        return list(_get(session.db.installed(), name).manifest.requires)


def _satisfies(sel: Selected, dep: Dependency) -> bool:
    if dep.kind == "package" and dep.name == sel.name:
        return True
    if any((p.kind, p.name) == (dep.kind, dep.name) for p in sel.manifest.provides):
        return True
    if dep.kind in ("file", "interpreter"):
        return any(f.path == dep.name.lstrip("/") for f in sel.entries())
    return False


def rdepends(root: str | os.PathLike[str], name: str) -> list[str]:
    """Installed packages that require something NAME provides."""
    with open_root(root) as session:
        installed = session.db.installed()
        target = _get(installed, name)
        return sorted(
            other.name
            for other in installed.values()
            if other.name != name and any(_satisfies(target, dep) for dep in other.manifest.requires)
        )


def whatprovides(root: str | os.PathLike[str], capability: str) -> list[str]:
    """Installed packages providing CAPABILITY: 'kind(name)', a bare name, or a path."""
    kind, _, rest = capability.partition("(")
    if rest.endswith(")"):
        deps = [Dependency(kind, rest[:-1])]
    elif capability.startswith("/"):
        deps = [Dependency("file", capability)]
    else:
        deps = [Dependency(k, capability) for k in ("package", "soname", "binary", "pkgconfig")]
    with open_root(root) as session:
        return sorted(
            sel.name for sel in session.db.installed().values() if any(_satisfies(sel, d) for d in deps)
        )


def files_of(root: str | os.PathLike[str], name: str) -> list[dict[str, Any]]:
    with open_root(root) as session:
        sel = _get(session.db.installed(), name)
        return [
            {
                "path": "/" + f.path,
                "type": f.type,
                "mode": f"{f.mode:04o}",
                "size": f.size,
                "component": f.component,
                "config": f.config,
            }
            for f in sel.entries()
        ]


def owner(root: str | os.PathLike[str], path: str) -> list[str]:
    rel = os.path.normpath("/" + path).lstrip("/")
    with open_root(root) as session:
        return sorted(session.db.owners_of(rel))
