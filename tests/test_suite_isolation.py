"""The suite never writes to the user's real ~/.cache or ~/.config: it runs with temporary XDG dirs."""

from __future__ import annotations

import os
from pathlib import Path

from helpers_cook import tiny_recipe

# Read while the module is collected, before any session fixture runs: the user's own dirs.
REAL_XDG_DIRS = {
    "XDG_CACHE_HOME": Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"),
    "XDG_CONFIG_HOME": Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"),
}


def _snapshot(root: Path) -> dict[str, int]:
    """Every path under *root* with its mtime (the empty dict when *root* does not exist)."""
    found: dict[str, int] = {}
    if not root.exists():
        return found
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            found[path] = os.lstat(path).st_mtime_ns
    found[str(root)] = os.lstat(root).st_mtime_ns
    return found


def test_conary_defaults_resolve_inside_the_sessions_temporary_xdg_dirs() -> None:
    from conary.ccs import default_key_path
    from conary.cook import default_work_root
    from conary.fetch import default_cache_dir, default_mirror_config_path

    cache = Path(os.environ.get("XDG_CACHE_HOME", REAL_XDG_DIRS["XDG_CACHE_HOME"]))
    config = Path(os.environ.get("XDG_CONFIG_HOME", REAL_XDG_DIRS["XDG_CONFIG_HOME"]))
    assert cache != REAL_XDG_DIRS["XDG_CACHE_HOME"]
    assert config != REAL_XDG_DIRS["XDG_CONFIG_HOME"]
    assert default_cache_dir().is_relative_to(cache)
    assert default_work_root().is_relative_to(cache)
    assert default_key_path().is_relative_to(config)
    assert default_mirror_config_path().is_relative_to(config)


def test_a_cook_with_every_default_leaves_the_real_dirs_untouched(cli, tmp_path: Path) -> None:
    """A cook without --source-cache or --key fills the default source cache, makes a work dir and
    creates the default signing key: all of it lands in the temporary dirs."""
    real = [REAL_XDG_DIRS["XDG_CACHE_HOME"] / "conary", REAL_XDG_DIRS["XDG_CONFIG_HOME"] / "conary"]
    before = [_snapshot(path) for path in real]
    r = cli("cook", "--output", tmp_path / "dist", tiny_recipe(tmp_path))
    assert r.code == 0, r.err
    assert [_snapshot(path) for path in real] == before
    assert (Path(os.environ["XDG_CONFIG_HOME"]) / "conary" / "keys" / "default").is_file()
    assert any((Path(os.environ["XDG_CACHE_HOME"]) / "conary" / "sources").rglob("*"))
