"""The environment every build step sees: fixed, small, and independent of the cooking process's own.

Nothing is inherited from the caller's environment: a step sees exactly what this module returns,
so a secret in the packager's shell never reaches a build, and two cooks on different machines
run their steps with the same variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from conary.recipe.model import Cross

# Paths as the steps see them. The hermetic sandbox binds the source tree and the destination here;
# builds that embed paths therefore embed the same ones on every machine.
BUILD_DIR = "/build"
DEST_DIR = "/destdir"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
_FLAG_VARS = ("CFLAGS", "CXXFLAGS")
_DEFAULT_FLAGS = "-O2 -g"


_TOOLS = (
    ("CC", "cc", "gcc"),
    ("CXX", "cxx", "g++"),
    ("AR", "ar", "ar"),
    ("LD", "ld", "ld"),
    ("RANLIB", "ranlib", "ranlib"),
    ("NM", "nm", "nm"),
    ("STRIP", "strip", "strip"),
)


def prefix_map_flag(build_dir: str, name: str, version: str) -> str:
    """The compiler flag that rewrites the build directory in debug info, __FILE__ and macros."""
    return f"-ffile-prefix-map={build_dir}=/usr/src/{name}-{version}"


def step_environment(
    *,
    name: str,
    version: str,
    jobs: int,
    source_date_epoch: int,
    build_dir: str = BUILD_DIR,
    dest_dir: str = DEST_DIR,
    home: str | None = None,
    path: str = SANDBOX_PATH,
    cross: Cross | None = None,
    recipe_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full environment of a build step.

    The recipe's ``build.environment`` goes on top of everything else, except that a recipe's CFLAGS
    or CXXFLAGS without a ``-ffile-prefix-map`` flag get ours appended, so that no build path leaks.
    """
    flags = f"{_DEFAULT_FLAGS} {prefix_map_flag(build_dir, name, version)}"
    env: dict[str, str] = {
        "PATH": path,
        "HOME": home or build_dir,
        "TMPDIR": "/tmp",
        "SHELL": "/bin/sh",
        "TERM": "dumb",
        "USER": "root",
        "LOGNAME": "root",
        "LC_ALL": "C",
        "LANG": "C",
        "TZ": "UTC",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "DESTDIR": dest_dir,
        "MAKEFLAGS": f"-j{jobs}",
        "CFLAGS": flags,
        "CXXFLAGS": flags,
        "CONARY_BUILD_DIR": build_dir,
        "CONARY_PACKAGE": name,
        "CONARY_VERSION": version,
    }
    if cross is not None:
        env.update(_cross_environment(cross))
        if cross.cross_tools:
            env["PATH"] = f"{cross.cross_tools.rstrip('/')}/bin:{path}"
    for key, value in (recipe_env or {}).items():
        if key in _FLAG_VARS and "-ffile-prefix-map" not in value and "-fdebug-prefix-map" not in value:
            value = f"{value} {prefix_map_flag(build_dir, name, version)}".strip()
        env[key] = value
    return env


def _cross_environment(cross: Cross) -> dict[str, str]:
    env: dict[str, str] = {}
    prefix = cross.tool_prefix
    if prefix is None and cross.target:
        prefix = f"{cross.target}-"
    for var, field, default in _TOOLS:
        explicit = getattr(cross, field)
        if explicit:
            env[var] = explicit
        elif prefix:
            env[var] = f"{prefix}{default}"
    # LFS-style recipes: $LFS is the system being built, $LFS_TGT the cross triple.
    if cross.sysroot:
        env["LFS"] = cross.sysroot
    if cross.target:
        env["LFS_TGT"] = cross.target
    return env
