"""Where the runtime keeps its state inside a root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_DIR = "var/lib/conary"
DB_NAME = "conary.db"
CAS_DIR = "conary/objects"
PACKAGE_CACHE = "var/cache/conary/packages"  # .ccs files downloaded from http repositories
# Paths that belong to the runtime itself; they are never package content.
PRIVATE_PATHS = ("var/lib/conary", "conary")


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def db_path(self) -> Path:
        return self.state_dir / DB_NAME

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "journal"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "lock"

    @property
    def cas_dir(self) -> Path:
        return self.root / CAS_DIR

    @property
    def package_cache(self) -> Path:
        return self.root / PACKAGE_CACHE


def layout(root: str | Path) -> Layout:
    return Layout(Path(root).absolute())
