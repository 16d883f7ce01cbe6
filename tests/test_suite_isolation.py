"""The suite never writes to the user's real ~/.cache or ~/.config: it runs with temporary XDG dirs."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from helpers_cook import TINYPROJ, make_tarball, write_recipe

# Read while the module is collected, before any session fixture runs: the user's own dirs.
REAL_XDG_DIRS = {
    "XDG_CACHE_HOME": Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"),
    "XDG_CONFIG_HOME": Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"),
}


def _state(path: Path) -> tuple[int, int] | None:
    """(size, mtime) of *path*, or None when it does not exist."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _names(directory: Path, prefix: str) -> set[str]:
    return {p.name for p in directory.glob(f"{prefix}*")} if directory.is_dir() else set()


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
    creates the default signing key: all of it lands in the temporary dirs. (Other programs on the
    machine may use the real dirs meanwhile, so the test looks for what this cook would have made.)"""
    real_cache = REAL_XDG_DIRS["XDG_CACHE_HOME"] / "conary"
    real_key = REAL_XDG_DIRS["XDG_CONFIG_HOME"] / "conary" / "keys" / "default"
    # A source unique to this run, so its cache entry cannot exist anywhere yet.
    unique = uuid.uuid4().hex
    tarball = make_tarball(TINYPROJ, tmp_path / "tinyproj-1.0.tar.gz", "tinyproj-1.0", extra={unique: b""})
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    recipe = write_recipe(tmp_path, f"isolation{unique[:12]}", tarball.name, f"sha256:{digest}")
    name = recipe.name.removesuffix(".recipe.toml")
    work_before = _names(real_cache / "work", name)
    key_before = _state(real_key)

    r = cli("cook", "--output", tmp_path / "dist", recipe)
    assert r.code == 0, r.err
    assert _state(real_cache / "sources" / "sha256" / digest) is None
    assert _names(real_cache / "work", name) == work_before
    assert _state(real_key) == key_before
    private_cache = Path(os.environ["XDG_CACHE_HOME"]) / "conary"
    assert (private_cache / "sources" / "sha256" / digest).is_file()
    assert (Path(os.environ["XDG_CONFIG_HOME"]) / "conary" / "keys" / "default").is_file()
